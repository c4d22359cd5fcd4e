"""Ledger URLs for tests: an SQLite file in a temporary directory."""

from __future__ import annotations

from pathlib import Path


def sqlite_url(path: Path | str) -> str:
    """The ledger URL of an SQLite file (absolute paths give the four-slash form)."""
    return f"sqlite:///{Path(path).expanduser().resolve()}"

"""Job audio on disk (a volume every worker can read), streamed in and deleted when its job ends."""

from __future__ import annotations

import secrets
from pathlib import Path
from typing import BinaryIO

COPY_CHUNK_BYTES = 1024 * 1024


class UploadTooLarge(Exception):
    def __init__(self, limit: int) -> None:
        super().__init__(f"the upload is larger than {limit} bytes")
        self.limit = limit


class AudioStore:
    """Files named by random tokens inside one directory; names never come from clients."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True, exist_ok=True)

    def path(self, name: str) -> Path:
        path = (self.directory / name).resolve()
        if path.parent != self.directory.resolve():
            raise ValueError(f"not a job audio file name: {name!r}")
        return path

    def new_name(self) -> str:
        return f"audio-{secrets.token_hex(16)}"

    def save(self, source: BinaryIO, limit: int) -> tuple[str, int]:
        """Copy ``source`` into a new file, chunk by chunk; UploadTooLarge (file removed) past ``limit``."""
        name = self.new_name()
        path = self.path(name)
        size = 0
        try:
            with path.open("wb") as target:
                while chunk := source.read(COPY_CHUNK_BYTES):
                    size += len(chunk)
                    if size > limit:
                        raise UploadTooLarge(limit)
                    target.write(chunk)
        except BaseException:
            path.unlink(missing_ok=True)
            raise
        return name, size

    def read(self, name: str) -> bytes | None:
        try:
            return self.path(name).read_bytes()
        except FileNotFoundError:
            return None

    def remove(self, name: str | None) -> None:
        if name:
            self.path(name).unlink(missing_ok=True)

    def remove_strays(self, in_use: set[str], older_than: float) -> int:
        """Delete files no job refers to (a submit that died half-way), once they are old enough."""
        removed = 0
        for path in self.directory.glob("audio-*"):
            try:
                stale = path.name not in in_use and path.stat().st_mtime < older_than
            except FileNotFoundError:
                continue
            if stale:
                path.unlink(missing_ok=True)
                removed += 1
        return removed

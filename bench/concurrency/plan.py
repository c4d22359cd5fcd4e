"""What one run measures: the model as the server resolves it, the threads every row uses, the layouts and levels
the command line chose, and the configured default's layout."""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from bench.common import ServedModel
from bench.concurrency.decisions import target_level
from bench.concurrency.layouts import MIXED, SELECTABLE, SERVER_KEYS, Layout, configured_layout, layouts


@dataclass(frozen=True)
class Plan:
    """The command line's choices (``args``) for ``served`` on a machine of ``cores`` cores."""

    args: argparse.Namespace
    served: ServedModel
    cores: int

    @property
    def threads(self) -> int:
        """CPU threads in all in every row."""
        return int(self.args.threads or self.cores)

    @property
    def every(self) -> dict[str, Layout]:
        return layouts(self.threads)

    @property
    def labels(self) -> dict[str, str]:
        return {key: layout.label for key, layout in self.every.items()}

    @property
    def selected(self) -> list[str]:
        """The layouts run besides the 1-thread floor."""
        return [key for key in SELECTABLE if key in self.args.layouts]

    @property
    def server_keys(self) -> list[str]:
        return [key for key in SERVER_KEYS if key in self.selected]

    @property
    def with_mixed(self) -> bool:
        return MIXED in self.selected and bool(self.server_keys)

    @property
    def levels(self) -> tuple[int, ...]:
        """Batched: the concurrent clients."""
        return tuple(self.args.levels)

    @property
    def unbatched_levels(self) -> tuple[int, ...]:
        return tuple(self.args.unbatched_levels)

    @property
    def target(self) -> int:
        """The client count the decisions compare at."""
        return target_level(self.levels, self.unbatched_levels)

    @property
    def default_key(self) -> str | None:
        """The configured default's layout, if it is one of these."""
        return configured_layout(self.served.model, self.threads, self.cores)

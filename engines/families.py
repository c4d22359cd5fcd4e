"""The engine families, registered in one place: a model's config names its family (``engine``),
and the family loads it and declares what it can do.

Adding a family: a package ``engines/<kind>/`` whose ``family.py`` defines ``FAMILY`` (its
capabilities, and where its loader is: the loader returns a ``Transcriber``, engines/types.py),
one line in ``FAMILIES``, the kind in ``ModelConfig.engine`` (app/settings.py), and a model entry
with ``engine: <kind>`` in the config. The service and the realtime sessions know only the
protocol and the capabilities.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from engines.capabilities import Capabilities
from engines.spec import LoadContext, ModelSpec
from engines.types import Transcriber

# kind → the module that defines its FAMILY (imported only when a model of that kind is configured)
FAMILIES: dict[str, str] = {
    "whisper": "engines.whisper.family",
    "moonshine": "engines.moonshine.family",
}


@dataclass(frozen=True)
class EngineFamily:
    kind: str
    description: str
    capabilities: Capabilities  # before loading; a loaded model may narrow them, never widen them
    loader: str  # "module:function" taking (ModelSpec, LoadContext); imported only when a model loads

    def load(self, spec: ModelSpec, context: LoadContext) -> Transcriber:
        module, _, name = self.loader.partition(":")
        function: Callable[[ModelSpec, LoadContext], Transcriber] = getattr(importlib.import_module(module), name)
        return function(spec, context)


def family(kind: str) -> EngineFamily:
    if kind not in FAMILIES:
        raise ValueError(f"unknown engine family {kind!r}; known: {', '.join(sorted(FAMILIES))}")
    found: EngineFamily = importlib.import_module(FAMILIES[kind]).FAMILY
    return found


def load_model(spec: ModelSpec, context: LoadContext) -> Transcriber:
    """Load ``spec`` with its family's loader."""
    return family(spec.kind).load(spec, context)

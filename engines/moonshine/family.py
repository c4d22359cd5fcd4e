"""The Moonshine family's entry in the registry (engines/families.py): cheap to import."""

from __future__ import annotations

from engines.capabilities import Capabilities
from engines.families import EngineFamily
from engines.spec import LoadContext, ModelSpec
from engines.types import Transcriber

# Moonshine base-en transcribes English. It has no word timings (so diarization transcribes each
# speaker turn on its own), no prompt or keywords input, and no batching engine; its decoder's
# logits give log-probs directly.
CAPABILITIES = Capabilities(
    languages=frozenset({"en"}),
    translation=False,
    word_timestamps=False,
    logprobs=True,
    prompt=False,
    keywords=False,
    batching=False,
    live=True,
    diarization="turns",
)


def _load(spec: ModelSpec, context: LoadContext) -> Transcriber:
    from engines.moonshine.loading import load_moonshine  # ONNX Runtime sessions only when needed

    return load_moonshine(spec, context)


FAMILY = EngineFamily("moonshine", "Moonshine (English) through ONNX Runtime", CAPABILITIES, _load)

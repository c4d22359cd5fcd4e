"""The Moonshine family's entry in the registry (engines/families.py): cheap to import."""

from __future__ import annotations

from engines.capabilities import Capabilities
from engines.families import EngineFamily

# Moonshine base-en transcribes English. It has no word timings (diarization transcribes each
# speaker turn on its own), no prompt or keywords input and no batching engine; its decoder's
# logits give log-probs directly.
CAPABILITIES = Capabilities(languages=frozenset({"en"}), logprobs=True)

FAMILY = EngineFamily(
    "moonshine", "Moonshine (English) through ONNX Runtime", CAPABILITIES, "engines.moonshine.loading:load_moonshine"
)

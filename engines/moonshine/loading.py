"""Load a Moonshine model: its two ONNX Runtime sessions and its tokenizer."""

from __future__ import annotations

import logging
import re
from pathlib import Path

from engines.cores import available_cores, thread_budget
from engines.errors import ModelLoadError
from engines.moonshine.engine import CacheShape, MoonshineEngine
from engines.moonshine.family import CAPABILITIES
from engines.moonshine.tokenizer import MoonshineTokenizer
from engines.moonshine.weights import check_model_dir, embedded_model_dir
from engines.spec import LoadContext, ModelSpec

log = logging.getLogger(__name__)


def load_moonshine(spec: ModelSpec, context: LoadContext) -> MoonshineEngine:
    import onnxruntime

    if spec.device == "cuda":
        raise ModelLoadError(f"Model {spec.name!r}: the Moonshine engine runs on CPU only (device: auto or cpu).")
    # batching: true is refused at start-up for every family that lacks it (app/serving/factory.py)
    embedded = spec.embedded_name
    directory = check_model_dir(embedded_model_dir(embedded) if embedded is not None else Path(spec.source))
    # Each concurrent inference gets its share of the cores, as Whisper's workers do.
    _, threads = thread_budget("cpu", spec.cpu_threads, spec.num_workers, available_cores())
    options = onnxruntime.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    try:
        encoder = onnxruntime.InferenceSession(
            str(directory / "encoder_model.ort"), options, providers=["CPUExecutionProvider"]
        )
        decoder = onnxruntime.InferenceSession(
            str(directory / "decoder_model_merged.ort"), options, providers=["CPUExecutionProvider"]
        )
    except Exception as exc:  # ONNX Runtime raises its own types for a broken file
        raise ModelLoadError(f"Could not load Moonshine model {spec.name!r} from {spec.source!r}: {exc}") from exc
    log.info("loaded model %s (moonshine) from %s on cpu, %d thread(s)", spec.name, spec.source, threads)
    tokenizer = MoonshineTokenizer.load(directory / "tokenizer.bin")
    return MoonshineEngine(
        (encoder, decoder), tokenizer, _cache_shape(decoder), name=spec.name, capabilities=CAPABILITIES
    )


def _cache_shape(decoder: object) -> CacheShape:
    """Read from the decoder's cache inputs (``past_key_values.<layer>.…``, shaped batch × heads × length × size)."""
    inputs = decoder.get_inputs()  # type: ignore[attr-defined]
    layers = {int(m.group(1)) for i in inputs if (m := re.match(r"past_key_values\.(\d+)\.", i.name))}
    sample = next(i for i in inputs if i.name.startswith("past_key_values."))
    return CacheShape(len(layers), int(sample.shape[1]), int(sample.shape[3]))

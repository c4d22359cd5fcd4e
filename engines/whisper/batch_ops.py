"""The CTranslate2 Whisper calls as batch operations: keys that say which calls can share a batch,
and how payloads are stacked into one call and its result split back per item.

Items share a batch only when the batched call gives each of them what it would get alone:
- ``encode``: the same feature shape (a batch is one tensor);
- ``generate``: the same encoder shape, the same decoding options, and prompts of the same length
  with the start-of-transcript token at the same place (CTranslate2 decodes a batch in lockstep
  from one start position; a window conditioned on different previous text rarely matches).
  Greedy decodes may differ in ``max_length`` (each window's token budget follows its audio): the
  batch runs to the largest, and an item whose result comes near its own limit is decoded again
  alone with it (greedy tokens up to the limit do not depend on it, so all others are exact);
- ``detect_language``: the same encoder shape;
- ``align`` (word timings, log-prob scoring) never shares a batch (``OP_LIMITS``): batched
  alignments of texts of different lengths gave other word timings (and, through the timings that
  place the next window, other text: WER 0.17 against alone on a 53-s recording). It still goes
  through the batcher, in turn with everyone else's calls.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass
from typing import Any

import ctranslate2
import numpy as np

ENCODE, GENERATE, DETECT_LANGUAGE, ALIGN = "encode", "generate", "detect_language", "align"
OP_LIMITS = {ALIGN: 1}  # items per call, whatever max_batch_size says (see the module's docstring)


def _frozen(value: Any) -> Hashable:
    if isinstance(value, list | tuple):
        return tuple(_frozen(v) for v in value)
    if isinstance(value, dict):
        return tuple(sorted((k, _frozen(v)) for k, v in value.items()))
    return value  # type: ignore[no-any-return]


def _thawed(value: Any) -> Any:
    return [_thawed(v) for v in value] if isinstance(value, tuple) else value


def encode_key(features: Any, to_cpu: bool) -> Hashable:
    return (tuple(features.shape), to_cpu)


def is_greedy(kwargs: dict[str, Any]) -> bool:
    """One hypothesis, always the most likely token (CTranslate2's defaults: beam 5, top-1)."""
    return bool(
        kwargs.get("beam_size", 5) == 1 and kwargs.get("sampling_topk", 1) == 1 and kwargs.get("num_hypotheses", 1) == 1
    )


def generate_key(encoder_output: Any, prompt: Sequence[int], sot: int, kwargs: dict[str, Any]) -> Hashable:
    sot_at = list(prompt).index(sot) if sot in prompt else -1
    shared = dict(kwargs)
    if is_greedy(kwargs) and "max_length" in shared:
        shared["max_length"] = None  # each item's own limit travels with it (see the module's docstring)
    return (tuple(encoder_output.shape[1:]), sot_at, len(prompt), _frozen(shared))


def token_room(max_length: int, prompt_length: int) -> int:
    """A lower bound on the tokens CTranslate2 4.x's Whisper generates before ``max_length`` stops it
    (measured: min(max_length - prompt + 1, max_length // 2)); a result this long may have been cut."""
    return max(0, min(max_length - prompt_length, max_length // 2) - 1)


def _limited_generate(model: Any, key: tuple[Any, ...], payloads: Sequence[Any]) -> list[Any]:
    kwargs = {name: _thawed(value) for name, value in key[3]}
    shared_limit = "max_length" in kwargs and kwargs["max_length"] is None  # greedy: see generate_key
    if shared_limit:
        kwargs["max_length"] = max(p[2] for p in payloads)
    results = list(model.generate(stack([p[0] for p in payloads]), [list(p[1]) for p in payloads], **kwargs))
    if not shared_limit or len(payloads) == 1:
        return results
    for i, (encoder_output, prompt, limit) in enumerate(payloads):
        if limit < kwargs["max_length"] and len(results[i].sequences_ids[0]) >= token_room(limit, len(prompt)):
            results[i] = model.generate(encoder_output, [list(prompt)], **(kwargs | {"max_length": limit}))[0]
    return results


def detect_key(encoder_output: Any) -> Hashable:
    return tuple(encoder_output.shape[1:])


def _on_cuda(view: Any) -> bool:
    return str(getattr(view, "device", "cpu")) == "cuda"


def stack(views: Sequence[Any]) -> Any:
    """One StorageView from several of batch size 1 each (CPU through numpy, CUDA through torch)."""
    if len(views) == 1:
        return views[0]
    if _on_cuda(views[0]):
        import torch  # only GPU hosts stack on the device

        tensors = [torch.as_tensor(v, device="cuda") for v in views]
        return ctranslate2.StorageView.from_array(torch.cat(tensors).contiguous())
    return ctranslate2.StorageView.from_array(np.ascontiguousarray(np.concatenate([np.asarray(v) for v in views])))


def split(view: Any, count: int) -> list[Any]:
    """The ``count`` items of a batched StorageView, each as a StorageView of batch size 1."""
    if count == 1:
        return [view]
    if _on_cuda(view):
        import torch

        tensor = torch.as_tensor(view, device="cuda")
        return [ctranslate2.StorageView.from_array(tensor[i : i + 1].clone()) for i in range(count)]
    array = np.asarray(view)
    return [ctranslate2.StorageView.from_array(np.ascontiguousarray(array[i : i + 1])) for i in range(count)]


@dataclass
class WhisperBatchOps:
    """Runs one batch of one operation on a CTranslate2 Whisper model."""

    model: Any  # ctranslate2.models.Whisper

    def __call__(self, op: str, key: Hashable, payloads: Sequence[Any]) -> list[Any]:
        if op == ENCODE:
            features = stack([p[0] for p in payloads])
            return split(self.model.encode(features, to_cpu=payloads[0][1]), len(payloads))
        if op == GENERATE:
            assert isinstance(key, tuple)
            return _limited_generate(self.model, key, payloads)
        if op == DETECT_LANGUAGE:
            return list(self.model.detect_language(stack(list(payloads))))
        if op == ALIGN:  # one item per call (OP_LIMITS)
            ((encoder_output, start_sequence, text_tokens, num_frames, median),) = payloads
            return [
                self.model.align(encoder_output, start_sequence, text_tokens, num_frames, median_filter_width=median)
            ]
        raise ValueError(f"unknown batch operation {op!r}")

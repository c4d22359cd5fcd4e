"""How many CPU cores this process may really use: its CPU affinity, capped by its cgroup CPU quota.

``os.cpu_count()`` and even the affinity mask report the host's cores inside a container limited
with a CPU quota (``docker run --cpus``, Kubernetes ``limits.cpu``); sizing thread pools by them
oversubscribes the quota and makes the threads throttle each other.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

import threadpoolctl

log = logging.getLogger(__name__)

CGROUP_ROOT = Path("/sys/fs/cgroup")
PROC_SELF_CGROUP = Path("/proc/self/cgroup")
# Where cgroup v1 mounts the cpu controller: alone, or joined with cpuacct.
_V1_CPU_MOUNTS = ("cpu", "cpu,cpuacct")


def available_cores(*, cgroup_root: Path = CGROUP_ROOT, proc_cgroup: str | None = None) -> int:
    """The smaller of the CPU affinity and the cgroup CPU quota (rounded up), at least 1.

    ``cgroup_root`` and ``proc_cgroup`` (the text of /proc/self/cgroup, read when None) are there
    so that tests can build a fake tree.
    """
    cores = _affinity_cores()
    if proc_cgroup is None:
        proc_cgroup = _read(PROC_SELF_CGROUP) or ""
    quota = cgroup_cpu_limit(cgroup_root, proc_cgroup)
    if quota is not None:
        # A fractional quota still lets a thread run part of the time on one more core.
        cores = min(cores, math.ceil(quota))
    return max(1, cores)


def cgroup_cpu_limit(cgroup_root: Path, proc_cgroup: str) -> float | None:
    """The smallest CPU quota, in cores, of the process's cgroup (v2 or v1) and its parents; None if unlimited."""
    paths = _cgroup_paths(proc_cgroup)
    limits = [
        *(_parse_cpu_max(_read(d / "cpu.max")) for d in _up_to_root(cgroup_root, paths.get("", "/"))),
        *(
            _parse_cfs(_read(d / "cpu.cfs_quota_us"), _read(d / "cpu.cfs_period_us"))
            for mount in _V1_CPU_MOUNTS
            for d in _up_to_root(cgroup_root / mount, paths.get("cpu", "/"))
        ),
    ]
    found = [limit for limit in limits if limit is not None]
    return min(found) if found else None


def _affinity_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return os.cpu_count() or 1


def _cgroup_paths(proc_cgroup: str) -> dict[str, str]:
    """Controller → cgroup path from /proc/self/cgroup lines ``id:controllers:path``; v2's controller is ""."""
    paths: dict[str, str] = {}
    for line in proc_cgroup.splitlines():
        parts = line.strip().split(":", 2)
        if len(parts) != 3:
            continue
        _, controllers, path = parts
        for controller in controllers.split(",") if controllers else [""]:
            paths.setdefault(controller, path)
    return paths


def _up_to_root(root: Path, cgroup_path: str) -> Iterator[Path]:
    """``root/cgroup_path`` and each parent up to ``root`` itself.

    Limits are hierarchical, so a parent's quota binds too. In a container /proc/self/cgroup may
    name the host's path, which is not under the container's mount: the walk still ends at the
    mount root, the container's own cgroup.
    """
    parts = [part for part in PurePosixPath(cgroup_path).parts if part not in ("/", ".", "..")]
    for depth in range(len(parts), -1, -1):
        yield root.joinpath(*parts[:depth])


def _read(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, ValueError):
        return None


def _parse_cpu_max(text: str | None) -> float | None:
    """cgroup v2 ``cpu.max``: ``"<quota> <period>"`` in microseconds, quota ``max`` when unlimited."""
    if text is None:
        return None
    fields = text.split()
    if len(fields) != 2 or fields[0] == "max":
        return None
    return _ratio(fields[0], fields[1])


def _parse_cfs(quota: str | None, period: str | None) -> float | None:
    """cgroup v1 ``cpu.cfs_quota_us`` (-1 when unlimited) over ``cpu.cfs_period_us``."""
    if quota is None or period is None:
        return None
    return _ratio(quota.strip(), period.strip())


def _ratio(quota: str, period: str) -> float | None:
    try:
        q, p = int(quota), int(period)
    except ValueError:
        return None
    if q <= 0 or p <= 0:  # -1 is v1's "unlimited"; anything else non-positive is garbage
        return None
    return q / p


def thread_budget(device: str, cpu_threads: int, workers: int, cores: int) -> tuple[int, int]:
    """CTranslate2 workers and intra-op threads per worker that fit in ``cores``.

    On CPU a worker is a set of threads: more workers than cores only makes them wait for each
    other, so extra concurrent calls queue for a worker instead. ``cpu_threads`` 0 shares the cores
    among the workers. On CUDA the workers are streams and keep their number.
    """
    if device == "cpu":
        workers = max(1, min(workers, cores))
        if cpu_threads and cpu_threads * workers > cores:
            log.warning(
                "cpu_threads %d x %d workers asks for more than the %d cores available", cpu_threads, workers, cores
            )
    return workers, cpu_threads or max(1, cores // workers)


def limit_blas_threads(threads: int) -> None:
    """Cap the BLAS libraries loaded in this process (numpy's OpenBLAS) at ``threads``, for good.

    Whisper's features (faster-whisper's STFT and mel filters) go through numpy, whose OpenBLAS
    starts a thread per core and lets the idle ones spin. Inferences already run side by side, one
    per share of the cores: measured on 2 cores with base, 2 BLAS threads cost a realtime turn's
    decode about 60 % more CPU than 1 (0.195 against 0.122 CPU s per audio s) at the same wall time.
    """
    threadpoolctl.threadpool_limits(limits=threads, user_api="blas")

"""available_cores: CPU affinity capped by cgroup v2 / v1 CPU quotas, on fake cgroup trees."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from engines.cores import available_cores, cgroup_cpu_limit

V2_PROC = "0::/app.slice/worker\n"
V1_PROC = "4:memory:/box\n2:cpuacct:/box\n1:cpu:/box\n0::/\n"


@pytest.fixture(autouse=True)
def eight_cores(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test sees eight cores in its affinity mask, whatever this machine has."""
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: set(range(8)), raising=False)


def write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)


def test_no_cgroup_files_means_the_affinity(tmp_path: Path) -> None:
    assert cgroup_cpu_limit(tmp_path, "") is None
    assert available_cores(cgroup_root=tmp_path, proc_cgroup="") == 8
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V2_PROC) == 8


def test_v2_unlimited(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "max 100000\n")
    write(tmp_path / "app.slice" / "worker" / "cpu.max", "max 100000\n")
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V2_PROC) == 8


def test_v2_fractional_quota_rounds_up(tmp_path: Path) -> None:
    write(tmp_path / "app.slice" / "worker" / "cpu.max", "150000 100000\n")
    assert cgroup_cpu_limit(tmp_path, V2_PROC) == 1.5
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V2_PROC) == 2


def test_v2_small_quota_is_still_one_core(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "10000 100000\n")
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V2_PROC) == 1


def test_v2_nested_parent_limit_wins(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "max 100000\n")
    write(tmp_path / "app.slice" / "cpu.max", "300000 100000\n")
    write(tmp_path / "app.slice" / "worker" / "cpu.max", "600000 100000\n")
    assert cgroup_cpu_limit(tmp_path, V2_PROC) == 3.0
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V2_PROC) == 3


def test_v2_container_path_missing_falls_back_to_the_root(tmp_path: Path) -> None:
    # In a container /proc/self/cgroup names the host's path; the mount root is the container's cgroup.
    write(tmp_path / "cpu.max", "200000 100000\n")
    assert available_cores(cgroup_root=tmp_path, proc_cgroup="0::/docker/0123abcd\n") == 2


@pytest.mark.parametrize("mount", ["cpu", "cpu,cpuacct"])
def test_v1_limited(tmp_path: Path, mount: str) -> None:
    write(tmp_path / mount / "box" / "cpu.cfs_quota_us", "250000\n")
    write(tmp_path / mount / "box" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path, V1_PROC) == 2.5
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V1_PROC) == 3


def test_v1_joined_controller_line(tmp_path: Path) -> None:
    write(tmp_path / "cpu,cpuacct" / "box" / "cpu.cfs_quota_us", "400000\n")
    write(tmp_path / "cpu,cpuacct" / "box" / "cpu.cfs_period_us", "100000\n")
    assert available_cores(cgroup_root=tmp_path, proc_cgroup="3:cpu,cpuacct:/box\n") == 4


def test_v1_mount_root_when_the_path_is_not_there(tmp_path: Path) -> None:
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "200000\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V1_PROC) == 2


def test_v1_unlimited(tmp_path: Path) -> None:
    write(tmp_path / "cpu" / "box" / "cpu.cfs_quota_us", "-1\n")
    write(tmp_path / "cpu" / "box" / "cpu.cfs_period_us", "100000\n")
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "-1\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    assert cgroup_cpu_limit(tmp_path, V1_PROC) is None
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V1_PROC) == 8


@pytest.mark.parametrize(
    "cpu_max", ["", "garbage", "150000", "1.5 100000", "150000 0", "0 100000", "max", "1 2 3", "\xff\xfe"]
)
def test_garbage_cpu_max_is_no_limit(tmp_path: Path, cpu_max: str) -> None:
    write(tmp_path / "cpu.max", cpu_max)
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V2_PROC) == 8


def test_garbage_v1_files_and_proc_text_are_no_limit(tmp_path: Path) -> None:
    write(tmp_path / "cpu" / "cpu.cfs_quota_us", "lots\n")
    write(tmp_path / "cpu" / "cpu.cfs_period_us", "100000\n")
    (tmp_path / "cpu,cpuacct").mkdir()
    (tmp_path / "cpu,cpuacct" / "cpu.cfs_quota_us").write_bytes(b"\xff\xfe\x00")
    assert available_cores(cgroup_root=tmp_path, proc_cgroup="not a cgroup file\n::\n1:cpu\n") == 8


def test_a_directory_where_a_file_should_be_is_no_limit(tmp_path: Path) -> None:
    (tmp_path / "cpu.max").mkdir()
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V2_PROC) == 8


def test_affinity_smaller_than_quota(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "sched_getaffinity", lambda _pid: {0, 1}, raising=False)
    write(tmp_path / "cpu.max", "400000 100000\n")
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V2_PROC) == 2


def test_smaller_of_v1_and_v2(tmp_path: Path) -> None:
    write(tmp_path / "cpu.max", "500000 100000\n")
    write(tmp_path / "cpu" / "box" / "cpu.cfs_quota_us", "300000\n")
    write(tmp_path / "cpu" / "box" / "cpu.cfs_period_us", "100000\n")
    assert available_cores(cgroup_root=tmp_path, proc_cgroup=V1_PROC) == 3


def test_without_sched_getaffinity_uses_cpu_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delattr(os, "sched_getaffinity", raising=False)
    monkeypatch.setattr(os, "cpu_count", lambda: 6)
    assert available_cores(cgroup_root=tmp_path, proc_cgroup="") == 6


def test_this_machine_reads_without_error() -> None:
    assert 1 <= available_cores() <= 8  # the real /proc and /sys, the fixture's eight-core affinity

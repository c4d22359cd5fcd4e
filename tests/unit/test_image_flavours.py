"""scripts/check_image_flavours.py passes the Dockerfile and catches a cpu/gpu drift it does not document."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from app.settings import PROJECT_ROOT

CHECK = PROJECT_ROOT / "scripts" / "check_image_flavours.py"
DOCKERFILE = PROJECT_ROOT / "Dockerfile"


def run_check(dockerfile: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, str(CHECK), str(dockerfile)], capture_output=True, text=True, check=False)


def test_dockerfile_flavours_differ_only_as_documented() -> None:
    result = run_check(DOCKERFILE)
    assert result.returncode == 0, result.stdout


def test_an_undocumented_difference_is_reported(tmp_path: Path) -> None:
    # Give only the gpu image an extra environment variable.
    text = DOCKERFILE.read_text()
    gpu_start = text.index("AS gpu\n")
    drifted = text[:gpu_start] + text[gpu_start:].replace("HF_HUB_DISABLE_TELEMETRY=1", "HF_HUB_DISABLE_TELEMETRY=0")
    (tmp_path / "Dockerfile").write_text(drifted)
    result = run_check(tmp_path / "Dockerfile")
    assert result.returncode == 1
    assert "stages cpu and gpu differ" in result.stdout
    assert "HF_HUB_DISABLE_TELEMETRY=0" in result.stdout


def test_a_missing_stage_is_reported(tmp_path: Path) -> None:
    (tmp_path / "Dockerfile").write_text(DOCKERFILE.read_text().replace("AS gpu\n", "AS cuda\n"))
    result = run_check(tmp_path / "Dockerfile")
    assert result.returncode == 1
    assert "'gpu' is missing" in result.stdout

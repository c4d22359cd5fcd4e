"""Model listing and sharing, the keys CLI, first-run key creation, and the unauthenticated opt-in."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from app.settings import PROJECT_ROOT
from tests.audio import SYNTH_SENTENCE, wer
from tests.server import RunningServer, default_test_config, free_port, run_server


def test_models_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = [model.id for model in client.models.list()]
    for expected in (
        "whisper-1",
        "gpt-4o-transcribe",
        "gpt-4o-mini-transcribe",
        "gpt-4o-mini-transcribe-2025-12-15",
        "base",
        "tiny.en",
    ):
        assert expected in ids
    model = client.models.retrieve("gpt-4o-mini-transcribe")
    assert model.id == "gpt-4o-mini-transcribe" and model.object == "model"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("no-such-model")


def test_aliases_share_one_loaded_model(client: openai.OpenAI, server: RunningServer, synth_wav: Path) -> None:
    for alias in ("whisper-1", "gpt-4o-transcribe", "gpt-4o-mini-transcribe-2025-12-15", "base"):
        assert wer(SYNTH_SENTENCE, client.audio.transcriptions.create(model=alias, file=synth_wav).text) <= 0.2
    assert server.log().count("loaded model base ") == 1


def test_local_model_id_english_only(client: openai.OpenAI, synth_wav: Path) -> None:
    result = client.audio.transcriptions.create(model="tiny.en", file=synth_wav)
    assert wer(SYNTH_SENTENCE, result.text) <= 0.25


def _cli(*args: str, keys_file: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "STT_KEYS_FILE": str(keys_file)}
    return subprocess.run(
        [sys.executable, "-m", "app", *args],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_cli_create_list_revoke(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    created = _cli("keys", "create", "alice", keys_file=keys_file)
    assert created.returncode == 0, created.stderr
    secret = created.stdout.strip()
    assert secret.startswith("sk-gateway-") and len(secret) > 40
    assert secret not in keys_file.read_text()
    assert _cli("keys", "create", "alice", keys_file=keys_file).returncode == 1
    listed = _cli("keys", "list", keys_file=keys_file)
    assert "alice" in listed.stdout and secret not in listed.stdout
    assert _cli("keys", "revoke", "alice", keys_file=keys_file).returncode == 0
    assert "alice" not in _cli("keys", "list", keys_file=keys_file).stdout
    assert _cli("keys", "revoke", "alice", keys_file=keys_file).returncode == 1


def test_created_key_works_and_revocation_applies_live(tmp_path: Path, synth_wav: Path) -> None:
    keys_file = tmp_path / "keys.json"
    config = default_test_config() | {"preload_models": []}
    with run_server(tmp_path / "srv", config, {"STT_KEYS_FILE": str(keys_file), "STT_API_KEYS": "[]"}) as server:
        secret = _cli("keys", "create", "bob", keys_file=keys_file).stdout.strip()
        client = openai.OpenAI(base_url=server.v1, api_key=secret, max_retries=0)
        assert [m.id for m in client.models.list()]
        _cli("keys", "revoke", "bob", keys_file=keys_file)
        with pytest.raises(openai.AuthenticationError):
            client.models.list()


def test_first_run_creates_and_prints_one_key(tmp_path: Path) -> None:
    keys_file = tmp_path / "keys.json"
    config_path = tmp_path / "config.yaml"
    config_path.write_text(json.dumps(default_test_config() | {"preload_models": []}))
    port = free_port()
    env = {**os.environ, "STT_KEYS_FILE": str(keys_file), "STT_API_KEYS": "[]", "PYTHONUNBUFFERED": "1"}
    process = subprocess.Popen(
        [sys.executable, "-m", "app", "--config", str(config_path), "serve", "--port", str(port)],
        cwd=PROJECT_ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert process.stdout is not None
        secret = ""
        for line in process.stdout:
            if line.strip().startswith("sk-gateway-"):
                secret = line.strip()
            if "Uvicorn running" in line:
                break
        assert secret, "the first run must print a key"
        assert "default" in keys_file.read_text() and secret not in keys_file.read_text()
        ok = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"Authorization": f"Bearer {secret}"})
        assert ok.status_code == 200
        assert httpx.get(f"http://127.0.0.1:{port}/v1/models").status_code == 401
    finally:
        process.terminate()
        process.wait(timeout=20)


def test_unauthenticated_only_when_configured(tmp_path: Path, synth_wav: Path) -> None:
    config = default_test_config() | {"preload_models": [], "allow_unauthenticated": True}
    with run_server(tmp_path, config) as server:
        assert httpx.get(f"{server.v1}/models").status_code == 200

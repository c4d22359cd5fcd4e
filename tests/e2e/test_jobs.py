"""Async jobs on one real server with the embedded queue (Huey on SQLite): submit a file or an audio_url, signed
webhooks checked by the openai SDK, results rendered exactly as the synchronous endpoint renders them, cancel,
one key's jobs hidden from another, retries of a failing receiver, and a server killed (-9) in the middle of a job.

Every listener here is on loopback: the server may reach 127.0.0.1 only (``url_allow_networks``), and the one
test that needs a forbidden target uses 127.0.0.2, whose listener must see nothing."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest

from tests.audio import LONG_TEXT, SYNTH_SENTENCE, espeak, repeat_audio, wer
from tests.diarization_audio import FEMALE, MALE, REFERENCE_TEXT, speak, two_voice_call
from tests.e2e.test_channels_api import stereo_wav
from tests.e2e.test_diarization_api import data_url
from tests.jobs_support import (
    FINAL,
    Receiver,
    admin_job,
    auth,
    error_of,
    file_server,
    job,
    submit,
    submitted,
    verify,
    wait_until,
    webhook_receiver,
    webhook_secret,
)
from tests.server import RunningServer, run_server, sdk_client

MODEL = "whisper-1"
DIARIZE = "gpt-4o-transcribe-diarize"


def jobs_config() -> dict[str, Any]:
    return {
        "models": {"tiny.en": {"source": "embedded:tiny.en", "encoder_padding_seconds": 10}},
        "aliases": {
            MODEL: {"model": "tiny.en", "usage": "duration"},
            DIARIZE: {"model": "tiny.en", "usage": "tokens", "diarize": True},
        },
        "preload_models": ["tiny.en"],
        "max_upload_bytes": 3_000_000,  # the synchronous limit; jobs take larger files
        "jobs": {
            "max_upload_bytes": 12_000_000,
            "url_allow_networks": ["127.0.0.1/32"],
            "lease_seconds": 3,
            "webhook_retry_seconds": 0.3,
            "webhook_max_attempts": 4,
        },
    }


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    with webhook_receiver() as running:
        yield running


@pytest.fixture(scope="module")
def jobs_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    with run_server(tmp_path_factory.mktemp("jobs"), jobs_config()) as running:
        yield running


@pytest.fixture(scope="module")
def secret(jobs_server: RunningServer) -> str:
    return webhook_secret(jobs_server, jobs_server.api_key)


@pytest.fixture(scope="module")
def long_speech(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """About two and a half minutes of generated speech."""
    folder = tmp_path_factory.mktemp("long")
    passage = espeak(folder / "passage.wav", LONG_TEXT, speed=170)
    return repeat_audio(passage, folder / "long.wav", 6, gap_seconds=1.0)


@pytest.mark.parametrize("response_format", ["json", "text", "srt", "vtt", "verbose_json"])
def test_each_format_is_rendered_as_the_synchronous_endpoint_renders_it_and_signed_webhooks_arrive(
    jobs_server: RunningServer, receiver: Receiver, secret: str, synth_wav: Path, response_format: str
) -> None:
    path = f"/formats/{response_format}"
    created = submitted(
        submit(
            jobs_server,
            jobs_server.api_key,
            synth_wav,
            model=MODEL,
            response_format=response_format,
            webhook_url=receiver.url(path),
        )
    )
    assert created["webhook_url"] == receiver.url(path) and created["response_format"] == response_format
    (delivery,) = receiver.wait_for(path, 1)
    verify(delivery, secret)
    event = delivery.event
    assert event["object"] == "event" and event["type"] == "audio.job.succeeded"
    assert event["data"] == {"id": created["id"]} and event["id"] == delivery.headers["webhook-id"]
    finished = job(jobs_server, jobs_server.api_key, created["id"])
    assert finished["status"] == "succeeded" and finished["progress"] == 1.0 and finished["error"] is None
    assert finished["audio_seconds"] == pytest.approx(6.3, abs=0.5)
    assert finished["started_at"] is not None and finished["finished_at"] >= finished["started_at"]
    assert finished["expires_at"] > finished["finished_at"]

    result = httpx.get(f"{jobs_server.v1}/audio/jobs/{created['id']}/result", headers=auth(jobs_server.api_key))
    raw = sdk_client(jobs_server).audio.transcriptions.with_raw_response.create(  # type: ignore[call-overload]
        model=MODEL, file=synth_wav, response_format=response_format
    )
    assert result.status_code == 200
    assert result.content == raw.content
    assert result.headers["content-type"] == raw.headers["content-type"]
    assert wer(SYNTH_SENTENCE, result.text) <= 0.35 or response_format != "text", result.text


def test_speakers_channels_and_known_speakers_as_the_synchronous_endpoint(
    jobs_server: RunningServer, tmp_path: Path
) -> None:
    """A two-voice call, one voice per channel, named by reference clips: the job's body is the sync body."""
    stereo, _ = two_voice_call(tmp_path, overlap=1.5)
    call = tmp_path / "call.wav"
    call.write_bytes(stereo_wav(stereo))
    references = [data_url(speak(tmp_path, FEMALE, REFERENCE_TEXT)), data_url(speak(tmp_path, MALE, REFERENCE_TEXT))]
    fields: dict[str, Any] = {
        "model": DIARIZE,
        "response_format": "diarized_json",
        "channels": "separate",
        "known_speaker_names[]": ["customer", "agent"],
        "known_speaker_references[]": references,
    }
    created = submitted(submit(jobs_server, jobs_server.api_key, call, **fields))
    done = wait_until(jobs_server, jobs_server.api_key, created["id"], FINAL, timeout=300)
    assert done["status"] == "succeeded", done
    result = httpx.get(f"{jobs_server.v1}/audio/jobs/{created['id']}/result", headers=auth(jobs_server.api_key))
    synchronous = httpx.post(
        f"{jobs_server.v1}/audio/transcriptions",
        headers=auth(jobs_server.api_key),
        data=fields,
        files={"file": ("call.wav", call.read_bytes(), "audio/wav")},
        timeout=300,
    )
    assert synchronous.status_code == 200, synchronous.text
    assert result.content == synchronous.content
    assert {segment["speaker"] for segment in result.json()["segments"]} == {"agent", "customer"}


def test_a_translation_job_and_a_json_submission_with_options(jobs_server: RunningServer, synth_wav: Path) -> None:
    # tiny.en cannot translate: known only once the model is leased, so the job fails with the synchronous code.
    translated = submitted(submit(jobs_server, jobs_server.api_key, synth_wav, task="translations", model=MODEL))
    done = wait_until(jobs_server, jobs_server.api_key, translated["id"], FINAL)
    with pytest.raises(openai.BadRequestError) as refused:
        sdk_client(jobs_server).audio.translations.create(model=MODEL, file=synth_wav)
    assert done["status"] == "failed" and done["error"]["code"] == refused.value.code, done
    assert done["error"]["message"] == refused.value.body["message"]  # type: ignore[index]
    with file_server(synth_wav.parent) as files:
        created = submitted(
            submit(
                jobs_server,
                jobs_server.api_key,
                None,
                audio_url=f"{files.base_url}/{synth_wav.name}",
                model=MODEL,
                response_format="verbose_json",
                timestamp_granularities=["word", "segment"],
                temperature=0,
            )
        )
        done = wait_until(jobs_server, jobs_server.api_key, created["id"], FINAL)
        assert files.requests == [f"/{synth_wav.name}"]  # fetched once
    assert done["status"] == "succeeded", done
    body = httpx.get(f"{jobs_server.v1}/audio/jobs/{created['id']}/result", headers=auth(jobs_server.api_key)).json()
    assert body["words"] and body["segments"] and wer(SYNTH_SENTENCE, body["text"]) <= 0.35


def test_a_long_file_reports_progress_and_is_transcribed(jobs_server: RunningServer, long_speech: Path) -> None:
    created = submitted(submit(jobs_server, jobs_server.api_key, long_speech, model=MODEL, response_format="text"))
    seen: list[float] = []
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        found = job(jobs_server, jobs_server.api_key, created["id"])
        if found["status"] in FINAL:
            break
        if found["status"] == "running":
            seen.append(found["progress"])
        time.sleep(0.2)
    assert found["status"] == "succeeded", found
    assert any(0 < p < 1 for p in seen), seen  # progress was reported part-way
    assert seen == sorted(seen)
    assert found["audio_seconds"] > 120
    text = httpx.get(f"{jobs_server.v1}/audio/jobs/{created['id']}/result", headers=auth(jobs_server.api_key)).text
    assert wer(" ".join([LONG_TEXT] * 6), text) <= 0.25


def test_cancel_a_queued_and_a_running_job(
    jobs_server: RunningServer, receiver: Receiver, secret: str, long_speech: Path, synth_wav: Path
) -> None:
    key = jobs_server.api_key
    running = submitted(submit(jobs_server, key, long_speech, model=MODEL, webhook_url=receiver.url("/cancel/a")))
    wait_until(jobs_server, key, running["id"], ("running",))
    # One job runs at a time (jobs.workers 1): the second waits in the queue.
    queued = submitted(submit(jobs_server, key, synth_wav, model=MODEL, webhook_url=receiver.url("/cancel/b")))
    answer = httpx.post(f"{jobs_server.v1}/audio/jobs/{queued['id']}/cancel", headers=auth(key))
    assert answer.status_code == 200 and answer.json()["status"] == "cancelled"
    answer = httpx.post(f"{jobs_server.v1}/audio/jobs/{running['id']}/cancel", headers=auth(key))
    assert answer.status_code == 200 and answer.json()["status"] in ("running", "cancelled")
    stopped = wait_until(jobs_server, key, running["id"], FINAL, timeout=30)
    assert stopped["status"] == "cancelled" and stopped["progress"] < 1
    for path in ("/cancel/a", "/cancel/b"):
        (delivery,) = receiver.wait_for(path, 1)
        verify(delivery, secret)
        assert delivery.event["type"] == "audio.job.cancelled"
    result = httpx.get(f"{jobs_server.v1}/audio/jobs/{running['id']}/result", headers=auth(key))
    assert result.status_code == 409 and error_of(result)["code"] == "job_not_succeeded"
    again = httpx.post(f"{jobs_server.v1}/audio/jobs/{running['id']}/cancel", headers=auth(key))
    assert again.json()["status"] == "cancelled"
    time.sleep(1.0)
    assert len(receiver.received("/cancel/a")) == 1 and len(receiver.received("/cancel/b")) == 1  # once each
    assert admin_job(jobs_server, queued["id"])["attempts"] == 0  # never ran


def test_one_key_cannot_see_another_keys_jobs(jobs_server: RunningServer, synth_wav: Path) -> None:
    created = httpx.post(
        f"{jobs_server.base_url}/admin/keys", headers=auth(jobs_server.admin_key), json={"name": "jobs-other"}
    )
    other = created.json()["secret"]
    mine = submitted(submit(jobs_server, jobs_server.api_key, synth_wav, model=MODEL))
    theirs = submitted(submit(jobs_server, other, synth_wav, model=MODEL))
    for path in (f"/audio/jobs/{mine['id']}", f"/audio/jobs/{mine['id']}/result"):
        answer = httpx.get(f"{jobs_server.v1}{path}", headers=auth(other))
        assert answer.status_code == 404 and error_of(answer)["code"] == "job_not_found"
    answer = httpx.post(f"{jobs_server.v1}/audio/jobs/{mine['id']}/cancel", headers=auth(other))
    assert answer.status_code == 404
    listed = httpx.get(f"{jobs_server.v1}/audio/jobs", headers=auth(other), params={"limit": 100}).json()
    assert [j["id"] for j in listed["data"]] == [theirs["id"]]
    everyone = httpx.get(
        f"{jobs_server.base_url}/admin/jobs", headers=auth(jobs_server.admin_key), params={"limit": 100}
    ).json()
    keys = {j["id"]: j["key_name"] for j in everyone["data"]}
    assert keys[mine["id"]] == "test" and keys[theirs["id"]] == "jobs-other"
    assert httpx.get(f"{jobs_server.base_url}/admin/jobs", headers=auth(other)).status_code == 403


def test_the_list_pages_newest_first(jobs_server: RunningServer, synth_wav: Path) -> None:
    ids = [submitted(submit(jobs_server, jobs_server.api_key, synth_wav, model=MODEL))["id"] for _ in range(3)]
    first = httpx.get(f"{jobs_server.v1}/audio/jobs", headers=auth(jobs_server.api_key), params={"limit": 2}).json()
    assert first["object"] == "list" and first["has_more"] is True
    assert [j["id"] for j in first["data"]] == ids[::-1][:2]
    assert first["first_id"] == ids[2] and first["last_id"] == ids[1]
    second = httpx.get(
        f"{jobs_server.v1}/audio/jobs", headers=auth(jobs_server.api_key), params={"limit": 1, "after": ids[1]}
    ).json()
    assert [j["id"] for j in second["data"]] == [ids[0]]
    for job_id in ids:
        wait_until(jobs_server, jobs_server.api_key, job_id, FINAL)


def test_a_failing_receiver_gets_retries_with_the_same_id_until_it_answers(
    jobs_server: RunningServer, receiver: Receiver, secret: str, synth_wav: Path
) -> None:
    path = "/flaky"
    receiver.fail_first[path] = 2
    created = submitted(
        submit(jobs_server, jobs_server.api_key, synth_wav, model=MODEL, webhook_url=receiver.url(path))
    )
    deliveries = receiver.wait_for(path, 3)
    assert len({d.headers["webhook-id"] for d in deliveries}) == 1
    assert len({d.body for d in deliveries}) == 1
    for delivery in deliveries:
        verify(delivery, secret)
    time.sleep(1.5)  # a fourth would have come by now
    assert len(receiver.received(path)) == 3
    recorded = admin_job(jobs_server, created["id"])["webhook_deliveries"]
    assert [(a["number"], a["status"]) for a in recorded] == [(1, 500), (2, 500), (3, 204)]


def test_audio_url_rules_hold_at_connect_time_and_on_redirects(jobs_server: RunningServer, synth_wav: Path) -> None:
    # 127.0.0.2 is loopback too, but outside this server's allow-list: its listener must see nothing.
    with file_server(synth_wav.parent) as allowed, file_server(synth_wav.parent, host="127.0.0.2") as forbidden:
        allowed.redirects["/moved.wav"] = f"{forbidden.base_url}/{synth_wav.name}"
        jobs = {
            "direct": f"{forbidden.base_url}/{synth_wav.name}",
            "redirected": f"{allowed.base_url}/moved.wav",
            "missing": f"{allowed.base_url}/nothing.wav",
        }
        ids = {
            name: submitted(submit(jobs_server, jobs_server.api_key, None, audio_url=url, model=MODEL))["id"]
            for name, url in jobs.items()
        }
        done = {name: wait_until(jobs_server, jobs_server.api_key, job_id, FINAL) for name, job_id in ids.items()}
        assert forbidden.requests == []
    assert done["direct"]["status"] == "failed" and done["direct"]["error"]["code"] == "url_forbidden"
    assert done["redirected"]["error"]["code"] == "url_forbidden"
    assert done["missing"]["error"]["code"] == "download_http_error"
    assert "404" in done["missing"]["error"]["message"]


def test_webhook_urls_follow_the_same_address_rules(jobs_server: RunningServer, secret: str, synth_wav: Path) -> None:
    with webhook_receiver(host="127.0.0.2") as forbidden:
        created = submitted(
            submit(jobs_server, jobs_server.api_key, synth_wav, model=MODEL, webhook_url=forbidden.url("/hook"))
        )
        assert wait_until(jobs_server, jobs_server.api_key, created["id"], FINAL)["status"] == "succeeded"
        deadline = time.monotonic() + 30
        while len(admin_job(jobs_server, created["id"])["webhook_deliveries"]) < 4:  # webhook_max_attempts
            assert time.monotonic() < deadline, admin_job(jobs_server, created["id"])
            time.sleep(0.2)
        assert forbidden.deliveries == []
    attempts = admin_job(jobs_server, created["id"])["webhook_deliveries"]
    assert all(a["status"] is None and a["error"].startswith("url_forbidden") for a in attempts), attempts


def test_bad_input_is_refused_at_submit_with_the_field_named(jobs_server: RunningServer, synth_wav: Path) -> None:
    key = jobs_server.api_key
    cases: list[tuple[httpx.Response, str]] = [
        (submit(jobs_server, key, synth_wav, model=MODEL, stream="true"), "stream"),
        (submit(jobs_server, key, synth_wav, model="no-such-model"), "model"),
        (submit(jobs_server, key, synth_wav, model=MODEL, response_format="mp3"), "response_format"),
        (submit(jobs_server, key, synth_wav, model=MODEL, webhook_url="ftp://127.0.0.1/x"), "webhook_url"),
        (submit(jobs_server, key, None, model=MODEL), "audio_url"),
        (submit(jobs_server, key, None, model=MODEL, audio_url="file:///etc/passwd"), "audio_url"),
        (submit(jobs_server, key, None, model=MODEL, audio_url="http://user:pw@127.0.0.1/a.wav"), "audio_url"),
        (submit(jobs_server, key, None, audio_url="http://127.0.0.1/a.wav"), "model"),
        (submit(jobs_server, key, synth_wav, model=MODEL, temperature="hot"), "temperature"),
    ]
    for response, param in cases:
        assert response.status_code == 400, (param, response.text)
        assert error_of(response)["param"] == param, response.text
    no_file = httpx.post(f"{jobs_server.v1}/audio/transcriptions/jobs", headers=auth(key), data={"model": MODEL})
    assert no_file.status_code == 400 and error_of(no_file)["param"] == "file"
    not_object = httpx.post(f"{jobs_server.v1}/audio/transcriptions/jobs", headers=auth(key), json=[1, 2])
    assert not_object.status_code == 400
    # A webhook needs the key's signing secret first.
    created = httpx.post(
        f"{jobs_server.base_url}/admin/keys", headers=auth(jobs_server.admin_key), json={"name": "no-secret"}
    )
    fresh = created.json()["secret"]
    refused = submit(jobs_server, fresh, synth_wav, model=MODEL, webhook_url="http://127.0.0.1:9/hook")
    assert refused.status_code == 400 and error_of(refused)["code"] == "webhook_secret_missing"
    unknown = httpx.get(f"{jobs_server.v1}/audio/jobs/audiojob_nope", headers=auth(key))
    assert unknown.status_code == 404
    assert httpx.get(f"{jobs_server.v1}/audio/jobs", headers={"Authorization": "Bearer wrong"}).status_code == 401


def test_the_sdk_client_reaches_the_job_api(jobs_server: RunningServer, synth_wav: Path) -> None:
    """The openai SDK's generic calls, as a client without a job helper would use them."""
    client = sdk_client(jobs_server)
    created = client.post(
        "/audio/transcriptions/jobs",
        cast_to=dict,
        body={"model": MODEL},
        files=[("file", (synth_wav.name, synth_wav.read_bytes(), "audio/wav"))],
        options={"headers": {"Content-Type": "multipart/form-data"}},
    )
    assert created["object"] == "audio.job"
    done = wait_until(jobs_server, jobs_server.api_key, created["id"], FINAL)
    assert done["status"] == "succeeded"
    fetched = client.get(f"/audio/jobs/{created['id']}", cast_to=dict)
    assert fetched["id"] == created["id"]
    with pytest.raises(openai.NotFoundError):
        client.get("/audio/jobs/audiojob_missing", cast_to=dict)


def test_a_server_killed_mid_job_finishes_it_once_after_a_restart(
    tmp_path: Path, receiver: Receiver, long_speech: Path
) -> None:
    workdir = tmp_path / "restart"
    path = "/restart"
    with run_server(workdir, jobs_config()) as first:
        secret = webhook_secret(first, first.api_key)
        created = submitted(submit(first, first.api_key, long_speech, model=MODEL, webhook_url=receiver.url(path)))
        deadline = time.monotonic() + 120
        while job(first, first.api_key, created["id"])["progress"] <= 0.05:
            assert time.monotonic() < deadline, "the job never got going"
            time.sleep(0.1)
        os.kill(first.process.pid, signal.SIGKILL)
        first.process.wait(timeout=30)
    # Same data directory and key names (run_server makes new secrets for the same names).
    with run_server(workdir, jobs_config()) as second:
        done = wait_until(second, second.api_key, created["id"], FINAL, timeout=300)
        assert done["status"] == "succeeded", done
        assert admin_job(second, created["id"])["attempts"] == 2
        (delivery,) = receiver.wait_for(path, 1)
        verify(delivery, secret)
        time.sleep(1.0)
        assert len(receiver.received(path)) == 1
        assert "lost its lease" not in second.log()
        usage = httpx.get(f"{second.base_url}/admin/usage", headers=auth(second.admin_key)).json()
        assert [row["requests"] for row in usage["data"] if row["key"] == "test"] == [1]  # one ledger row


def test_a_server_stopped_normally_hands_its_running_job_back(tmp_path: Path, long_speech: Path) -> None:
    workdir = tmp_path / "handback"
    with run_server(workdir, jobs_config()) as first:
        created = submitted(submit(first, first.api_key, long_speech, model=MODEL))
        wait_until(first, first.api_key, created["id"], ("running",))
        first.process.send_signal(signal.SIGTERM)
        # uvicorn shuts down gracefully, then re-raises the signal it caught: the exit status is -15.
        assert first.process.wait(timeout=60) in (0, -signal.SIGTERM)
        assert "Application shutdown complete" in first.log()
        assert f"job {created['id']}: handed back to the queue" in first.log()
    with run_server(workdir, jobs_config()) as second:
        assert job(second, second.api_key, created["id"])["status"] in ("queued", "running")
        done = wait_until(second, second.api_key, created["id"], FINAL, timeout=300)
        assert done["status"] == "succeeded" and admin_job(second, created["id"])["attempts"] == 2


def test_jobs_take_uploads_larger_than_the_synchronous_limit_up_to_their_own(
    jobs_server: RunningServer, long_speech: Path, tmp_path: Path
) -> None:
    assert 3_000_000 < long_speech.stat().st_size < 12_000_000
    with pytest.raises(openai.APIStatusError) as too_large:
        sdk_client(jobs_server).audio.transcriptions.create(model=MODEL, file=long_speech)
    assert too_large.value.status_code == 413
    accepted = submitted(submit(jobs_server, jobs_server.api_key, long_speech, model=MODEL))
    httpx.post(f"{jobs_server.v1}/audio/jobs/{accepted['id']}/cancel", headers=auth(jobs_server.api_key))
    huge = repeat_audio(long_speech, tmp_path / "huge.wav", 3)
    refused = submit(jobs_server, jobs_server.api_key, huge, model=MODEL)
    assert refused.status_code == 413 and error_of(refused)["param"] == "file"

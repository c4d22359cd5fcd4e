"""Webhook signatures are what the openai SDK's own verifier accepts, and nothing else."""

from __future__ import annotations

import json
import time

import openai
import pytest

from app.jobs.signing import new_secret, signed_headers


def _client() -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url="http://127.0.0.1:9/v1")


def test_the_sdk_verifies_a_signed_delivery() -> None:
    secret = new_secret()
    body = json.dumps({"id": "evt_1", "object": "event", "type": "audio.job.succeeded"}).encode()
    headers = signed_headers(secret, "evt_1", int(time.time()), body)
    _client().webhooks.verify_signature(body, headers, secret=secret)


def test_the_sdk_refuses_another_secret_or_a_changed_body() -> None:
    secret = new_secret()
    body = b'{"id": "evt_2"}'
    headers = signed_headers(secret, "evt_2", int(time.time()), body)
    with pytest.raises(openai.InvalidWebhookSignatureError):
        _client().webhooks.verify_signature(body, headers, secret=new_secret())
    with pytest.raises(openai.InvalidWebhookSignatureError):
        _client().webhooks.verify_signature(body + b" ", headers, secret=secret)


def test_secrets_are_distinct_and_prefixed() -> None:
    first, second = new_secret(), new_secret()
    assert first.startswith("whsec_") and first != second

"""Our OpenAI-compatible wire format and retry behaviour, against a fake local server (not model quality)."""

from __future__ import annotations

import time

import pytest

from shared.errors import InputError, NotConfigured, RemoteError, TimedOut
from shared.models import ModelClient, image_part
from tests.fake_openai import Scripted

pytestmark = pytest.mark.anyio


@pytest.fixture
def vision(model_role):
    return model_role("VISION", "fake-vision", api_key="sk-test-secret-key-123456")


async def test_wire_chat_with_image_parts_sends_model_messages_and_key(vision):
    client = ModelClient("VISION", purpose="vision")
    messages = [{"role": "user", "content": [{"type": "text", "text": "what is this?"},
                                             image_part(b"\x89PNG fake", "image/png")]}]
    answer = await client.chat(messages, max_tokens=50)
    assert answer.text == "fake answer"
    assert answer.usage.prompt_tokens == 11 and answer.usage.reasoning_tokens == 3
    sent = vision.requests[-1]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == "Bearer sk-test-secret-key-123456"
    body = sent.json()
    assert body["model"] == "fake-vision" and body["max_tokens"] == 50
    part = body["messages"][0]["content"][1]
    assert part["type"] == "image_url" and part["image_url"]["url"].startswith("data:image/png;base64,")


async def test_wire_embeddings_are_batched_in_one_request(monkeypatch, fake_openai):
    monkeypatch.setenv("TOOLSUITE_EMBEDDING_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("TOOLSUITE_EMBEDDING_MODEL", "fake-embed")
    vectors, usage = await ModelClient("EMBEDDING").embed(["一", "two", "three"])
    assert len(vectors) == 3 and all(len(v) == 8 for v in vectors)
    assert len(fake_openai.requests) == 1
    assert fake_openai.requests[0].json()["input"] == ["一", "two", "three"]
    assert usage.requests == 1


async def test_wire_transcription_posts_multipart_file(monkeypatch, fake_openai):
    monkeypatch.setenv("OPENAI_BASE_URL", fake_openai.base_url)  # role falls back to OPENAI_*
    monkeypatch.setenv("OPENAI_API_KEY", "sk-fallback-key-000000")
    monkeypatch.setenv("WHISPER_MODEL_NAME", "fake-whisper")  # the reference's alias
    payload, _ = await ModelClient("TRANSCRIBE").transcribe(b"RIFFfake", "a.wav")
    assert payload["text"] == "hello from the fake transcriber"
    sent = fake_openai.requests[-1]
    assert sent.path == "/v1/audio/transcriptions"
    assert sent.headers["content-type"].startswith("multipart/form-data")
    assert b"fake-whisper" in sent.body and b"RIFFfake" in sent.body


async def test_wire_429_is_retried_honouring_retry_after(vision):
    vision.script.extend([Scripted(429, {"error": {"message": "slow down"}}, headers={"retry-after": "0.2"}),
                          Scripted(503, {"error": {"message": "busy"}})])
    client = ModelClient("VISION", backoff_base=0.05)
    started = time.monotonic()
    answer = await client.chat([{"role": "user", "content": "hi"}])
    assert answer.text == "fake answer"
    assert answer.usage.retries == 2 and len(vision.requests) == 3
    assert time.monotonic() - started >= 0.2


async def test_wire_retries_are_bounded(vision):
    vision.script.extend([Scripted(500, {"error": {"message": "boom"}})] * 5)
    client = ModelClient("VISION", retries=2, backoff_base=0.01)
    with pytest.raises(RemoteError, match="HTTP 500"):
        await client.chat([{"role": "user", "content": "hi"}])
    assert len(vision.requests) == 3


async def test_wire_auth_failure_names_the_setting_and_hides_the_key(vision):
    vision.script.append(Scripted(401, {"error": {"message": "bad key sk-test-secret-key-123456"}}))
    with pytest.raises(RemoteError) as caught:
        await ModelClient("VISION").chat([{"role": "user", "content": "hi"}])
    message = str(caught.value)
    assert "TOOLSUITE_VISION_API_KEY" in message and "sk-test-secret" not in message
    assert len(vision.requests) == 1  # 401 is not retried


async def test_wire_bad_request_is_not_retried_and_says_why(vision):
    vision.script.append(Scripted(400, {"error": {"message": "image too large"}}))
    with pytest.raises(InputError, match="image too large"):
        await ModelClient("VISION").chat([{"role": "user", "content": "hi"}])


async def test_wire_slow_endpoint_times_out(vision):
    vision.script.extend([Scripted(200, None, delay=2.0)] * 2)
    client = ModelClient("VISION", timeout=0.3, retries=1, backoff_base=0.01)
    started = time.monotonic()
    with pytest.raises(TimedOut):
        await client.chat([{"role": "user", "content": "hi"}])
    assert time.monotonic() - started < 1.9


async def test_wire_garbage_and_empty_answers_are_errors(vision):
    vision.script.append(Scripted(200, {"choices": []}))
    with pytest.raises(RemoteError, match="no answer"):
        await ModelClient("VISION").chat([{"role": "user", "content": "hi"}])
    vision.script.append(Scripted(200, {"id": "x", "object": "chat.completion", "created": 0, "model": "m",
                                        "choices": [{"index": 0, "finish_reason": "stop",
                                                     "message": {"role": "assistant", "content": "  "}}]}))
    with pytest.raises(RemoteError, match="empty answer"):
        await ModelClient("VISION").chat([{"role": "user", "content": "hi"}])


async def test_unreachable_endpoint_names_the_url_setting(monkeypatch):
    monkeypatch.setenv("TOOLSUITE_VISION_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("TOOLSUITE_VISION_MODEL", "m")
    client = ModelClient("VISION", retries=1, backoff_base=0.01)
    with pytest.raises(RemoteError, match="TOOLSUITE_VISION_BASE_URL"):
        await client.chat([{"role": "user", "content": "hi"}])


async def test_unconfigured_and_offline_roles_refuse_before_any_request(monkeypatch, fake_openai):
    with pytest.raises(NotConfigured, match="TOOLSUITE_VISION_MODEL"):
        await ModelClient("VISION").chat([{"role": "user", "content": "hi"}])
    monkeypatch.setenv("TOOLSUITE_VISION_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("TOOLSUITE_VISION_MODEL", "m")
    monkeypatch.setenv("TOOLSUITE_OFFLINE", "1")
    with pytest.raises(NotConfigured, match="OFFLINE"):
        await ModelClient("VISION").chat([{"role": "user", "content": "hi"}])
    assert fake_openai.requests == []


def test_the_no_model_sentence_says_what_is_missing_and_how_to_fix_it(monkeypatch):
    client = ModelClient("VISION", purpose="vision")
    sentence = client.unanswered("there is no description")
    assert sentence.startswith("No vision model is configured, so there is no description (set TOOLSUITE_VISION_MODEL")
    assert client.unanswered("there is no description", heading="Local evidence").startswith(
        "Local evidence: no vision model is configured, so there is no description (set TOOLSUITE_VISION_MODEL")
    monkeypatch.setenv("TOOLSUITE_VISION_MODEL", "m")
    monkeypatch.setenv("TOOLSUITE_VISION_API_KEY", "k")
    monkeypatch.setenv("TOOLSUITE_OFFLINE", "1")
    offline = ModelClient("VISION", purpose="vision").unanswered("there is no description")
    assert offline == ("The vision model is remote and network access is disabled (TOOLSUITE_OFFLINE=1), so there is "
                       "no description.")

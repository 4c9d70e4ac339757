"""The OpenAI-compatible model client every server uses (chat with images, embeddings, transcription).

Only the `openai` package speaks to endpoints, so OpenAI, vLLM, Ollama, LM Studio, TEI and
Anthropic's OpenAI-compatible endpoint all work. The SDK's own retries are off: this module retries
429, 5xx and network errors itself with exponential back-off (honouring Retry-After), inside a
per-request timeout and an optional overall deadline, and turns every failure into a message that
names the endpoint and the fix, without the API key.
"""

from __future__ import annotations

import base64
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import anyio

from shared import settings
from shared.errors import InputError, NotConfigured, RemoteError, TimedOut, redact

log = logging.getLogger("toolsuite.models")
T = TypeVar("T")

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


@dataclass
class Usage:
    requests: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    reasoning_tokens: int = 0

    def add(self, usage: Any) -> None:
        if usage is None:
            return
        self.prompt_tokens += int(getattr(usage, "prompt_tokens", 0) or 0)
        self.completion_tokens += int(getattr(usage, "completion_tokens", 0) or 0)
        details = getattr(usage, "completion_tokens_details", None)
        self.reasoning_tokens += int(getattr(details, "reasoning_tokens", 0) or 0) if details else 0


@dataclass
class ChatAnswer:
    text: str
    model: str
    finish_reason: str | None
    usage: Usage = field(default_factory=Usage)


def image_part(data: bytes, mime: str, detail: str = "auto") -> dict[str, Any]:
    """A chat content part carrying an image inline, as every OpenAI-compatible vision API accepts."""
    encoded = base64.b64encode(data).decode("ascii")
    return {"type": "image_url", "image_url": {"url": f"data:{mime};base64,{encoded}", "detail": detail}}


class ModelClient:
    """One role's endpoint (VISION, REASONING, EMBEDDING, TRANSCRIBE, AUDIO)."""

    def __init__(
        self,
        role: str,
        *,
        purpose: str | None = None,
        timeout: float | None = None,
        retries: int | None = None,
        backoff_base: float = 1.0,
        backoff_cap: float = 30.0,
    ) -> None:
        self.endpoint = settings.model_endpoint(role)
        self.purpose = purpose or role.lower()
        self.timeout = timeout or settings.number("TOOLSUITE_MODEL_TIMEOUT", 120, minimum=1)
        self.retries = int(settings.number("TOOLSUITE_MODEL_RETRIES", 3, minimum=0)) if retries is None else retries
        self.backoff_base = backoff_base
        self.backoff_cap = backoff_cap
        self._client: Any = None

    @property
    def configured(self) -> bool:
        return self.endpoint.configured

    def unavailable(self) -> str | None:
        """Why this role's model cannot be called now (not configured, or offline), or None."""
        if not self.endpoint.configured:
            return settings.missing_model_message(self.endpoint.role, self.purpose)
        if settings.offline():
            return f"the {self.purpose} model is remote and network access is disabled (TOOLSUITE_OFFLINE=1)"
        return None

    def unanswered(self, consequence: str, *, heading: str | None = None) -> str:
        """The sentence a tool gives in place of the model's answer when `unavailable()`: why there is no
        answer, what that means for this call (`consequence`), and the fix."""
        if not self.endpoint.configured:
            reason = f"no {self.purpose} model is configured, so {consequence} "
            reason += f"({settings.model_settings_hint(self.endpoint.role)})."
        else:
            reason = f"{self.unavailable()}, so {consequence}."
        return f"{heading}: {reason}" if heading else reason[0].upper() + reason[1:]

    def require(self) -> None:
        reason = self.unavailable()
        if reason:
            raise NotConfigured(reason)

    def _sdk(self) -> Any:
        if self._client is None:
            from openai import AsyncOpenAI

            self._client = AsyncOpenAI(
                api_key=self.endpoint.api_key or "not-needed",
                base_url=self.endpoint.base_url,
                timeout=self.timeout,
                max_retries=0,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()
            self._client = None

    async def _with_retries(
        self, call: Callable[[], Awaitable[T]], usage: Usage, deadline: float | None
    ) -> T:
        import openai

        attempt = 0
        while True:
            usage.requests += 1
            try:
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimedOut(f"the {self.purpose} model did not answer within the time limit")
                with anyio.fail_after(min(self.timeout, remaining) if remaining is not None else self.timeout):
                    return await call()
            except TimeoutError:
                error: Exception = TimedOut(
                    f"the {self.purpose} model at {self._where()} did not answer within {self.timeout:.0f} s "
                    "(TOOLSUITE_MODEL_TIMEOUT)"
                )
                retry_after = None
            except openai.APIStatusError as exc:
                if exc.status_code not in RETRYABLE_STATUS:
                    raise self._status_failure(exc) from None
                error, retry_after = self._status_failure(exc), _retry_after(exc)
            except openai.APITimeoutError:
                error, retry_after = TimedOut(f"the {self.purpose} model at {self._where()} timed out"), None
            except openai.APIConnectionError:
                error = RemoteError(
                    f"cannot reach the {self.purpose} model at {self._where()}: check "
                    f"TOOLSUITE_{self.endpoint.role}_BASE_URL and that the server is running"
                )
                retry_after = None
            if attempt >= self.retries:
                raise error
            delay = retry_after if retry_after is not None else self._backoff(attempt)
            if deadline is not None and time.monotonic() + delay >= deadline:
                raise error
            attempt += 1
            usage.retries += 1
            log.info("retrying %s request in %.1f s after: %s", self.purpose, delay, error)
            await anyio.sleep(delay)

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff_cap, self.backoff_base * (2**attempt)) * (0.5 + random.random() / 2)

    def _where(self) -> str:
        return self.endpoint.base_url or "the OpenAI API"

    def _status_failure(self, exc: Any) -> Exception:
        status = exc.status_code
        detail = redact(_error_detail(exc))
        if status in (401, 403):
            return RemoteError(
                f"the {self.purpose} endpoint at {self._where()} refused the credentials (HTTP {status}): "
                f"check TOOLSUITE_{self.endpoint.role}_API_KEY"
            )
        if status == 404:
            return RemoteError(
                f"the {self.purpose} endpoint at {self._where()} answered 404 for model "
                f"{self.endpoint.model!r}: check TOOLSUITE_{self.endpoint.role}_MODEL and the base URL"
                + (f" ({detail})" if detail else "")
            )
        if status == 429:
            return RemoteError(f"the {self.purpose} endpoint is rate-limiting (HTTP 429) and retries ran out")
        if 400 <= status < 500:
            return InputError(f"the {self.purpose} endpoint rejected the request (HTTP {status}): {detail}")
        return RemoteError(f"the {self.purpose} endpoint failed (HTTP {status}) after retries: {detail}")

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        max_tokens: int | None = None,
        temperature: float | None = None,
        n: int | None = None,
        extra: dict[str, Any] | None = None,
        deadline: float | None = None,
    ) -> ChatAnswer:
        self.require()
        usage = Usage()
        kwargs: dict[str, Any] = {"model": self.endpoint.model, "messages": messages}
        if max_tokens is not None:
            kwargs["max_tokens"] = max_tokens
        if temperature is not None:
            kwargs["temperature"] = temperature
        if n is not None:
            kwargs["n"] = n
        if extra:
            kwargs.update(extra)
        sdk = self._sdk()
        response = await self._with_retries(lambda: sdk.chat.completions.create(**kwargs), usage, deadline)
        usage.add(getattr(response, "usage", None))
        choices = getattr(response, "choices", None) or []
        if not choices or getattr(choices[0], "message", None) is None:
            raise RemoteError(f"the {self.purpose} model returned no answer (empty choices)")
        message = choices[0].message
        content = message.content
        if isinstance(content, list):  # some servers return content parts
            content = "".join(part.get("text", "") for part in content if isinstance(part, dict))
        if not content or not str(content).strip():
            raise RemoteError(
                f"the {self.purpose} model returned an empty answer (finish reason: {choices[0].finish_reason})"
            )
        return ChatAnswer(text=str(content).strip(), model=getattr(response, "model", None) or self.endpoint.model,
                          finish_reason=choices[0].finish_reason, usage=usage)

    async def embed(self, texts: list[str], *, deadline: float | None = None) -> tuple[list[list[float]], Usage]:
        self.require()
        usage = Usage()
        sdk = self._sdk()
        response = await self._with_retries(
            lambda: sdk.embeddings.create(model=self.endpoint.model, input=texts), usage, deadline
        )
        usage.add(getattr(response, "usage", None))
        data = sorted(response.data, key=lambda item: item.index)
        vectors = [list(item.embedding) for item in data]
        if len(vectors) != len(texts):
            raise RemoteError(f"the embeddings endpoint returned {len(vectors)} vectors for {len(texts)} inputs")
        return vectors, usage

    async def embed_raw(self, texts: list[str], *, deadline: float | None = None) -> tuple[bytes, Usage]:
        """The endpoint's response body, undecoded, asking for base64 vectors (4 bytes a number instead
        of about 20 as JSON text). For bulk callers that decode many vectors at once: building one
        Python float per number (what `embed` returns) is what held a client to a few hundred texts a
        second. Endpoints that ignore encoding_format answer float lists, which the caller handles."""
        self.require()
        usage = Usage()
        sdk = self._sdk()
        response = await self._with_retries(
            lambda: sdk.embeddings.with_raw_response.create(model=self.endpoint.model, input=texts,
                                                            encoding_format="base64"), usage, deadline
        )
        return response.content, usage

    async def transcribe(
        self, audio: bytes, filename: str, *, language: str | None = None, deadline: float | None = None
    ) -> tuple[dict[str, Any], Usage]:
        self.require()
        usage = Usage()
        sdk = self._sdk()
        kwargs: dict[str, Any] = {"model": self.endpoint.model, "file": (filename, audio)}
        if language:
            kwargs["language"] = language
        response = await self._with_retries(
            lambda: sdk.audio.transcriptions.create(response_format="verbose_json", **kwargs), usage, deadline
        )
        payload = response.model_dump() if hasattr(response, "model_dump") else {"text": str(response)}
        return payload, usage


def _retry_after(exc: Any) -> float | None:
    headers = getattr(getattr(exc, "response", None), "headers", None) or {}
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return min(max(float(value), 0.0), 60.0)
    except ValueError:
        return None


def _error_detail(exc: Any) -> str:
    body = getattr(exc, "body", None)
    if isinstance(body, str) and body.strip():  # the SDK hands over a string "error" field as the body itself
        return body[:300]
    if isinstance(body, dict):
        inner = body.get("error", body)
        if isinstance(inner, dict) and inner.get("message"):
            return str(inner["message"])[:300]
        if isinstance(inner, str):
            return inner[:300]
    return str(getattr(exc, "message", "") or "")[:300]

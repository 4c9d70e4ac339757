"""Hard problems sent to a strong reasoning model, with retries inside a total time limit.

Knows nothing about MCP: `solve` takes a question and a progress callback and returns the final
answer. Hidden reasoning is never returned: `<think>` blocks in the content and any separate
`reasoning_content` field are dropped.
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from typing import Any

import anyio

from shared import settings
from shared.errors import InputError, TimedOut
from shared.models import ModelClient, Usage
from shared.worker import ProgressFn

SYSTEM_PROMPT = (
    "You are a careful expert problem solver. Think the problem through step by step, check your work, "
    "then give the final answer clearly. If the problem is ambiguous, state the interpretation you used."
)
MAX_QUESTION_CHARS = 200_000
EFFORTS = ("minimal", "low", "medium", "high")
_THINK_BLOCK = re.compile(r"<think(?:ing)?>.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)
_UNCLOSED_THINK = re.compile(r"^.*?</think(?:ing)?>", re.DOTALL | re.IGNORECASE)


@dataclass
class Solution:
    answer: str
    model: str
    finish_reason: str | None
    usage: Usage
    elapsed_seconds: float


def strip_hidden_reasoning(text: str) -> str:
    cleaned = _THINK_BLOCK.sub("", text)
    # Some servers stream the opening tag in a separate field and only the closing tag in content.
    if re.search(r"</think(?:ing)?>", cleaned, re.IGNORECASE):
        cleaned = _UNCLOSED_THINK.sub("", cleaned, count=1)
    return cleaned.strip()


def request_options() -> dict[str, Any]:
    """Reasoning effort and thinking budget, only when the operator set them."""
    options: dict[str, Any] = {}
    if settings.raw("TOOLSUITE_REASONING_EFFORT"):
        options["reasoning_effort"] = settings.choice("TOOLSUITE_REASONING_EFFORT", EFFORTS, "")
    budget = settings.number("TOOLSUITE_REASONING_THINKING_BUDGET", 0, minimum=0)
    if budget:
        options["extra_body"] = {"thinking": {"type": "enabled", "budget_tokens": int(budget)}}
    return options


async def solve(question: str, progress: ProgressFn | None = None, client: ModelClient | None = None) -> Solution:
    question = question.strip()
    if not question:
        raise InputError("the question is empty: describe the problem to solve")
    if len(question) > MAX_QUESTION_CHARS:
        raise InputError(f"the question is {len(question)} characters; the limit is {MAX_QUESTION_CHARS}")
    client = client or ModelClient("REASONING", purpose="reasoning")
    client.require()
    total = settings.number("TOOLSUITE_REASONING_TOTAL_TIMEOUT", 900, minimum=5)
    max_tokens = settings.number("TOOLSUITE_REASONING_MAX_TOKENS", 0, minimum=0)
    started = time.monotonic()
    deadline = started + total
    messages = [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": question}]
    answer_box: dict[str, Any] = {}

    async def ask() -> None:
        answer_box["answer"] = await client.chat(
            messages, max_tokens=int(max_tokens) or None, extra=request_options(), deadline=deadline
        )

    async def tick() -> None:
        while True:
            elapsed = time.monotonic() - started
            if progress is not None:
                # Progress callbacks are called from worker threads (they may block until the client has it).
                await anyio.to_thread.run_sync(progress, round(elapsed, 1), total,
                                               f"waiting for the reasoning model ({elapsed:.0f} s)")
            await anyio.sleep(2.0)

    try:
        with anyio.fail_after(total + 1):
            async with anyio.create_task_group() as group:
                group.start_soon(tick)
                await ask()
                group.cancel_scope.cancel()
    except TimeoutError:
        raise TimedOut(
            f"the reasoning model did not answer within {total:.0f} s (TOOLSUITE_REASONING_TOTAL_TIMEOUT)"
        ) from None
    finally:
        await client.close()
    chat = answer_box["answer"]
    answer = strip_hidden_reasoning(chat.text)
    if not answer:
        raise TimedOut(
            "the reasoning model spent its whole output on hidden reasoning and gave no final answer; "
            "raise TOOLSUITE_REASONING_MAX_TOKENS or lower TOOLSUITE_REASONING_EFFORT"
        )
    return Solution(answer=answer, model=chat.model, finish_reason=chat.finish_reason, usage=chat.usage,
                    elapsed_seconds=round(time.monotonic() - started, 3))

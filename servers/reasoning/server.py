"""tool-reasoning: the MCP face of `servers.reasoning.engine`."""

from __future__ import annotations

from typing import Annotated

from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from servers import registry
from servers.reasoning import engine
from shared import models
from shared.outputs import from_engine, mirrors
from shared.server import REMOTE_MODEL, Progress, ToolResult, add_tool, create_server


@mirrors(models.Usage)
class UsageModel(BaseModel):
    requests: int
    retries: int = Field(description="Requests repeated after a 429, 5xx or network failure.")
    prompt_tokens: int
    completion_tokens: int
    reasoning_tokens: int = Field(description="Tokens of hidden reasoning, when the endpoint reports them.")


@mirrors(engine.Solution)
class ReasoningOutput(BaseModel):
    answer: str = Field(description="The model's final answer (its hidden reasoning is not included).")
    model: str = Field(description="The model that answered.")
    finish_reason: str | None = Field(description="Why the model stopped (e.g. 'stop', 'length').")
    elapsed_seconds: float = Field(description="Wall time of the call, retries included.")
    usage: UsageModel


async def reasoning(
    question: Annotated[
        str,
        Field(
            description="The complete problem statement, with every fact, constraint and number the model "
            "needs; the model sees nothing else.",
            min_length=1,
            max_length=engine.MAX_QUESTION_CHARS,
        ),
    ],
    ctx: Context,
) -> ToolResult:
    """Solve a hard problem with a strong reasoning model and return its final answer.

    Use for math, logic puzzles, riddles, IQ-test questions and multi-step analysis that need long
    careful thought; do not use it for simple lookups. The question must be self-contained. The
    call can take minutes: progress is reported while the model thinks, failed requests are
    retried with back-off inside a total limit (TOOLSUITE_REASONING_TOTAL_TIMEOUT, default 900 s).
    Needs a reasoning model (TOOLSUITE_REASONING_MODEL and base URL/API key); without one the
    result is an error naming those settings.
    """
    progress = Progress(ctx, min_interval=1.0)
    solution = await engine.solve(question, progress)
    data = from_engine(ReasoningOutput, solution)
    text = solution.answer
    if solution.finish_reason == "length":
        text += "\n\n[the model stopped at its output limit; the answer may be incomplete]"
    return ToolResult(text=text, data=data)


def build():
    server = create_server(
        registry.name_of(__name__),
        "Sends hard problems (math, logic, puzzles, multi-step analysis) to a strong reasoning model.",
    )
    add_tool(server, reasoning, title="Reason about a hard problem", output=ReasoningOutput,
             annotations=REMOTE_MODEL)
    return server

"""A small server for load tests: one tool that sleeps, then appends its tag to a file.

Served by the suite's own transport code (`shared.transport.run_server`), so the admission gate,
authentication and HTTP refusals under test are the real ones. `SLOW_LOG` names the file.
"""

from __future__ import annotations

import os
import time

from pydantic import BaseModel, Field

from shared.server import READ_ONLY_LOCAL, ToolResult, add_tool, create_server
from shared.transport import run_server


class Done(BaseModel):
    tag: str


def slow(tag: str = Field(description="label written to the log"),
         seconds: float = Field(0.5, ge=0, le=30, description="how long to sleep")) -> ToolResult:
    """Sleep, then record that the call ran to completion."""
    time.sleep(seconds)
    with open(os.environ["SLOW_LOG"], "a", encoding="utf-8") as log:
        log.write(tag + "\n")
    return ToolResult(text=f"done {tag}", data=Done(tag=tag))


def build():
    server = create_server("tool-slow", "A test server with one slow tool.")
    add_tool(server, slow, title="Slow", output=Done, annotations=READ_ONLY_LOCAL)
    return server


if __name__ == "__main__":
    run_server("tool-slow", 8199, build)

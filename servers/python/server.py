"""tool-python: a local, stateful, locked-down code sandbox. Interface complete; engine pending."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

from shared.server import EXECUTES_CODE, PendingOutput, add_tool, create_server, pending_tool
from shared.transport import run_server

NAME = "tool-python"

SandboxId = Annotated[str, Field(description="The id create_sandbox returned.", min_length=1, max_length=200)]
SandboxPath = Annotated[str, Field(description="A path inside the sandbox home (/home/user).",
                                   min_length=1, max_length=4096)]


def create_sandbox(
    timeout: Annotated[int, Field(description="Seconds of inactivity after which the sandbox and its files "
                                  "are removed (60-86400).", ge=60, le=86400)] = 600,
) -> None:
    """Create an isolated sandbox (no network, private home at /home/user) and return its id."""
    return pending_tool(NAME, "create_sandbox")


def run_python_code(
    code_block: Annotated[str, Field(description="Python code to run; state persists between calls.",
                                     min_length=1, max_length=1_000_000)],
    sandbox_id: SandboxId,
) -> None:
    """Run Python in the sandbox's persistent interpreter; returns stdout, stderr, the last value, errors
    and figures."""
    return pending_tool(NAME, "run_python_code")


def run_command(
    command: Annotated[str, Field(description="A shell command to run in the sandbox home.",
                                  min_length=1, max_length=100_000)],
    sandbox_id: SandboxId,
) -> None:
    """Run a shell command in the sandbox; returns exit code, stdout and stderr."""
    return pending_tool(NAME, "run_command")


def upload_file_from_local_to_sandbox(
    sandbox_id: SandboxId,
    local_file_path: Annotated[str, Field(description="A host file inside the allowed roots.",
                                          min_length=1, max_length=4096)],
    sandbox_file_path: SandboxPath = "/home/user",
) -> None:
    """Copy a host file (inside the allowed roots) into the sandbox."""
    return pending_tool(NAME, "upload_file_from_local_to_sandbox")


def download_file_from_internet_to_sandbox(
    sandbox_id: SandboxId,
    url: Annotated[str, Field(description="An http(s) URL (fetched by the host with limits).",
                              min_length=1, max_length=8192)],
    sandbox_file_path: SandboxPath = "/home/user",
) -> None:
    """Download a URL into the sandbox through the host's safe fetcher."""
    return pending_tool(NAME, "download_file_from_internet_to_sandbox")


def download_file_from_sandbox_to_local(
    sandbox_id: SandboxId,
    sandbox_file_path: SandboxPath,
    local_filename: Annotated[str | None, Field(description="File name to save as in the output folder.",
                                                max_length=255)] = None,
) -> None:
    """Copy a file out of the sandbox into the configured output folder on the host."""
    return pending_tool(NAME, "download_file_from_sandbox_to_local")


def build():
    server = create_server(NAME, "Runs Python and shell commands in local isolated sandboxes.")
    for fn, title in (
        (create_sandbox, "Create a sandbox"),
        (run_python_code, "Run Python code"),
        (run_command, "Run a shell command"),
        (upload_file_from_local_to_sandbox, "Upload a file to a sandbox"),
        (download_file_from_internet_to_sandbox, "Download a URL into a sandbox"),
        (download_file_from_sandbox_to_local, "Download a file from a sandbox"),
    ):
        add_tool(server, fn, title=title, output=PendingOutput, annotations=EXECUTES_CODE)
    return server


def main() -> None:
    from servers.registry import entry

    run_server(NAME, entry(NAME).port, build)

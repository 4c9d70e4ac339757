"""Standing attack suite, what failure messages disclose: no absolute host path outside the allowed
roots and no temporary file name, whatever library wrote the message, enforced in one place (the
errors layer every failure text passes through). Never skipped on CI.
"""

from __future__ import annotations

import base64
import tempfile
from pathlib import Path

import pytest
from mcp import Client
from pydantic import BaseModel

from shared.errors import HOST_PATH, TEMPORARY, InputError, mark_failure, scrub_paths
from shared.server import READ_ONLY_LOCAL, ToolResult, add_tool, create_server

pytestmark = pytest.mark.anyio


def test_paths_outside_the_roots_and_temporary_names_are_replaced(root: Path):
    temporary = f"{tempfile.gettempdir()}/toolsuite-fetch-x1y2z3"
    cases = {
        f"cannot identify image file '{temporary}'": f"cannot identify image file '{TEMPORARY}'",
        "cannot identify image file '/var/lib/app/secret.png'": f"cannot identify image file '{HOST_PATH}'",
        "Failed to open file '/proc/self/fd/7' as type pdf.": "Failed to open file 'the input' as type pdf.",
        "see file:///etc/shadow for details": f"see file://{HOST_PATH} for details",
        "wrote /home/user/.cache/tmpab12cd_x/out.wav.": f"wrote {TEMPORARY}.",
        "no such file: /srv/data/report.pdf": f"no such file: {HOST_PATH}",
        "decoder said: tmpab12cd_x is damaged": f"decoder said: {TEMPORARY} is damaged",
    }
    for message, expected in cases.items():
        assert scrub_paths(message) == expected, message


def test_what_may_stay_stays(root: Path):
    inside = f"{root}/docs/a.pdf"
    for message in (f"file not found: 'x.pdf' (allowed roots: {root})", f"cannot read {inside}",
                    "could not fetch https://example.org/a/b.pdf: HTTP 404", "ratio 3/4 and 1/2",
                    "the PDF has 3 pages / 2 images", "see http://host:8080/tmp/x and ftp://h/etc/passwd"):
        assert scrub_paths(message) == message


def _server() -> object:
    server = create_server("test-messages", "test")
    temporary = Path(tempfile.gettempdir()) / "toolsuite-data-abc123"

    def fails_like_a_library(path: str) -> ToolResult:
        """Raise what a library would say about a temporary copy and a host path."""
        raise InputError(f"cannot identify image file {str(temporary)!r}; also tried /opt/models/x.onnx "
                         f"for {path!r}")

    def answers_an_error(path: str) -> ToolResult:
        """An error result built by a tool itself."""
        return ToolResult(text=f"engine failed on /srv/data/{path} (copy at {temporary})", is_error=True)

    add_tool(server, fails_like_a_library, output=_Out, annotations=READ_ONLY_LOCAL, title="x")
    add_tool(server, answers_an_error, output=_Out, annotations=READ_ONLY_LOCAL, title="y")
    return server


class _Out(BaseModel):
    pass


async def test_failure_texts_of_every_kind_pass_through_the_scrubber():
    async with Client(_server()) as client:
        raised = (await client.call_tool("fails_like_a_library", {"path": "/etc/passwd"})).content[-1].text
        built = (await client.call_tool("answers_an_error", {"path": "x.png"})).content[-1].text
    assert raised == (f"Error: cannot identify image file '{TEMPORARY}'; also tried {HOST_PATH} for '/etc/passwd'")
    assert built == f"Error: engine failed on {HOST_PATH} (copy at {TEMPORARY})"


def test_the_failure_marker_is_added_to_the_scrubbed_text():
    assert mark_failure("open /root/.ssh/id_rsa failed") == f"Error: open {HOST_PATH} failed"


def test_tool_python_speaks_of_the_sandbox_home_which_is_no_host_path():
    message = "file not found in the sandbox: /home/user/data/x.csv"
    assert mark_failure(message, "tool-python") == "[ERROR]: " + message
    assert mark_failure(message, "tool-reader") == f"Error: file not found in the sandbox: {HOST_PATH}"
    leak = f"could not fetch into /home/user from {tempfile.gettempdir()}/toolsuite-fetch-ab12"
    assert mark_failure(leak, "tool-python") == f"[ERROR]: could not fetch into /home/user from {TEMPORARY}"


async def test_real_tools_name_the_input_not_the_descriptor_or_temporary_copy(root: Path):
    from servers.reader.server import build as reader
    from servers.vqa.server import build as vqa

    damaged_png = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 64).decode()
    damaged_pdf = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.7\n1 0 obj\n<<").decode()
    (root / "cut.pdf").write_bytes(b"%PDF-1.7\n1 0 obj\n<<")
    texts = []
    async with Client(reader()) as client:
        for uri in (damaged_png, damaged_pdf, "cut.pdf"):
            texts.append((await client.call_tool("convert_to_markdown", {"uri": uri})).content[-1].text)
    async with Client(vqa()) as client:
        texts.append((await client.call_tool("visual_question_answering",
                                             {"image_path_or_url": damaged_png, "question": "?"})).content[-1].text)
    for text in texts:
        assert text.startswith("Error: "), text
        assert tempfile.gettempdir() not in text and "/proc/self/fd" not in text and "toolsuite-" not in text, text

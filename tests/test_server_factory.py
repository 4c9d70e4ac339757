"""The server factory's conventions, through the real protocol with a small test server."""

from __future__ import annotations

import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated

import anyio
import pytest
from mcp import Client
from mcp.server.mcpserver import Context
from pydantic import BaseModel, Field

from shared import cache
from shared.errors import InputError, NotConfigured
from shared.lazy import LazyEngine
from shared.server import READ_ONLY_LOCAL, Image, Progress, ToolResult, add_tool, create_server
from shared.text import decode
from tests.checks import until

pytestmark = pytest.mark.anyio


class Echo(BaseModel):
    text: str
    count: int


cancelled = threading.Event()


def build():
    server = create_server("test-server", "for tests")

    def echo(text: Annotated[str, Field(description="what to echo", max_length=100_000)],
             count: Annotated[int, Field(description="repeats", ge=1, le=100_000)] = 1) -> ToolResult:
        """Echo text, repeated."""
        return ToolResult(text=text * count, data=Echo(text=text, count=count),
                          images=[Image(b"\x89PNG\r\n\x1a\nfake", "image/png")])

    def slow_sync(ctx: Context) -> ToolResult:
        """Work in a worker thread, reporting progress."""
        progress = Progress(ctx, min_interval=0)
        for step in range(5):
            progress.report_sync(step + 1, 5, f"step {step + 1}")
            time.sleep(0.05)
        return ToolResult(text="done", data=Echo(text="done", count=5))

    async def hang() -> ToolResult:
        """Sleep far past every limit."""
        try:
            await anyio.sleep(60)
        except anyio.get_cancelled_exc_class():
            cancelled.set()
            raise
        return ToolResult(text="never")

    def fail_group() -> ToolResult:
        """Fail the way TaskGroups fail."""
        raise ExceptionGroup("unhandled errors in a TaskGroup", [InputError("file not found: clip.mp4")])

    def crash() -> ToolResult:
        """Fail unexpectedly."""
        raise KeyError("/secret/internal/path")

    for fn in (echo, slow_sync, hang, fail_group, crash):
        add_tool(server, fn, title=fn.__name__, output=Echo, annotations=READ_ONLY_LOCAL,
                 timeout=1.0 if fn is hang else None)
    return server


async def test_text_structured_content_and_images_come_back_with_the_text_last():
    async with Client(build()) as client:
        result = await client.call_tool("echo", {"text": "你好", "count": 2})
    assert not result.is_error
    # Hosts that read only the last block (MiroThinker's tool manager) must find the whole answer there.
    assert [block.type for block in result.content] == ["image", "text"]
    assert result.content[-1].text == "你好你好"
    assert result.structured_content == {"text": "你好", "count": 2}
    assert result.content[0].mime_type == "image/png"


async def test_tool_order_is_registration_order_and_output_schema_is_published():
    async with Client(build()) as client:
        tools = (await client.list_tools()).tools
    assert [t.name for t in tools] == ["echo", "slow_sync", "hang", "fail_group", "crash"]
    assert tools[0].output_schema["properties"].keys() == {"text", "count"}


async def test_output_over_the_budget_is_cut_with_a_visible_note(monkeypatch):
    monkeypatch.setenv("TOOLSUITE_MAX_OUTPUT_TOKENS", "1000")
    async with Client(build()) as client:
        result = await client.call_tool("echo", {"text": "汉字 ", "count": 5000})
    text = result.content[-1].text
    assert "output cut at the 1000-token budget" in text
    assert len(text) < 3000


async def test_a_bad_setting_is_reported_by_name_not_replaced_by_its_default(monkeypatch):
    monkeypatch.setenv("TOOLSUITE_TOOL_TIMEOUT", "soon")
    async with Client(build()) as client:
        result = await client.call_tool("echo", {"text": "x"})
    assert result.is_error and result.content[-1].text == "Error: TOOLSUITE_TOOL_TIMEOUT='soon' is not a number"


async def test_progress_from_a_worker_thread_reaches_the_client():
    seen: list[tuple[float, float | None, str | None]] = []

    async def on_progress(done, total, message):
        seen.append((done, total, message))

    async with Client(build(), mode="legacy") as client:
        result = await client.call_tool("slow_sync", {}, progress_callback=on_progress)
    assert result.content[0].text == "done"
    assert [s[0] for s in seen] == [1, 2, 3, 4, 5] and seen[-1][2] == "step 5"


async def test_hard_timeout_answers_an_error_and_cancels_the_work():
    cancelled.clear()
    started = time.monotonic()
    async with Client(build()) as client:
        result = await client.call_tool("hang", {})
        assert result.is_error and "did not finish within 1 s" in result.content[0].text
        assert (await client.call_tool("echo", {"text": "still here"})).content[-1].text == "still here"
    assert cancelled.is_set() and time.monotonic() - started < 5


async def test_client_cancellation_stops_the_tool():
    cancelled.clear()
    async with Client(build(), mode="legacy") as client:
        with anyio.move_on_after(0.3):
            await client.call_tool("hang", {})
        await anyio.sleep(0.3)
        assert (await client.call_tool("echo", {"text": "next"})).content[-1].text == "next"
    assert cancelled.is_set()


async def test_exception_groups_and_crashes_become_clear_errors():
    async with Client(build()) as client:
        group = await client.call_tool("fail_group", {})
        crash = await client.call_tool("crash", {})
    # The marker tells the model it failed even when a host drops isError.
    assert group.is_error and group.content[0].text == "Error: file not found: clip.mp4"
    assert crash.is_error and crash.content[0].text.startswith("Error: internal error in crash (KeyError)")
    assert "/secret" not in crash.content[0].text and "Traceback" not in crash.content[0].text


def test_lazy_engine_loads_once_and_remembers_a_missing_module():
    calls = []
    engine = LazyEngine("thing", lambda: calls.append(1) or "loaded", "pip install thing")
    assert engine.get() == "loaded" and engine.get() == "loaded" and calls == [1]

    def missing():
        import not_a_real_module_for_tests  # noqa: F401

    broken = LazyEngine("OCR", missing, "pip install 'toolsuite[reader]'")
    for _ in range(2):
        with pytest.raises(NotConfigured, match=r"not_a_real_module_for_tests.*toolsuite\[reader\]"):
            broken.get()
    assert broken.loads == 1


def test_cache_writes_are_atomic_and_keyed_by_content_and_version(tmp_path: Path):
    source = tmp_path / "doc.txt"
    source.write_bytes(b"content one")
    key_one = cache.cache_key(cache.file_digest(source), "engine-1")
    assert key_one != cache.cache_key(cache.file_digest(source), "engine-2")
    source.write_bytes(b"content two")
    assert key_one != cache.cache_key(cache.file_digest(source), "engine-1")
    target = cache.area("test") / key_one
    cache.write_atomic(target, b"derived")
    assert cache.read(target) == b"derived"
    assert str(target).startswith(str(tmp_path / "cache"))
    assert not [p for p in target.parent.iterdir() if p.name.startswith(".tmp-")]


def test_cache_lock_serialises_two_writers(tmp_path: Path):
    order: list[str] = []
    lock = tmp_path / "k.lock"

    def worker(name: str) -> None:
        with cache.exclusive(lock):
            order.append(f"{name}-in")
            time.sleep(0.1)
            order.append(f"{name}-out")

    threads = [threading.Thread(target=worker, args=(n,)) for n in "ab"]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert order in (["a-in", "a-out", "b-in", "b-out"], ["b-in", "b-out", "a-in", "a-out"])


def test_text_decoding_handles_real_encodings_and_invalid_utf8():
    assert decode("中文".encode("gb18030")).encoding == "gb18030"
    assert decode("中文".encode("gb18030")).text == "中文"
    assert decode("中文".encode("utf-16")).text == "中文"
    assert decode("\ufeffabc".encode()).text == "abc"
    broken = decode(b"valid text \xff\xfe\xfd more text")
    assert broken.text.startswith("valid text") and broken.replaced == 3
    assert "3 invalid byte sequences" in broken.note


def build_engine_server(stopped: list[BaseException]):
    """A server whose tool runs a blocking engine loop through `shared.worker`, as the media tools do."""
    from shared import worker
    from shared.errors import ToolFailure

    server = create_server("engine-server", "for tests")

    async def loop(ctx: Context, data_uri: str) -> ToolResult:
        """Loop in a worker until stopped, with an input open."""

        def work(item, job: worker.Job) -> None:
            try:
                while True:
                    assert item.path.exists()
                    job.stop.check("the loop")
                    time.sleep(0.02)
            except ToolFailure as exc:
                stopped.append(exc)
                raise

        await worker.run_on_input(data_uri, work, progress=Progress(ctx))
        return ToolResult(text="never")

    add_tool(server, loop, title="loop", output=Echo, annotations=READ_ONLY_LOCAL, timeout=0.5)
    add_tool(server, loop, name="long_loop", title="long loop", output=Echo, annotations=READ_ONLY_LOCAL)
    return server


async def test_engine_work_stopped_by_the_time_limit_is_a_timeout_and_its_input_is_removed(tmp_path: Path,
                                                                                           monkeypatch):
    from shared.errors import TimedOut

    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # where the data: URI's file is written
    stopped: list[BaseException] = []
    async with Client(build_engine_server(stopped)) as client:
        result = await client.call_tool("loop", {"data_uri": "data:text/plain,hello"})
        assert result.is_error and "loop did not finish within 0.5 s" in result.content[0].text
        await until(lambda: bool(stopped), 3)
    assert len(stopped) == 1 and isinstance(stopped[0], TimedOut)
    assert str(stopped[0]) == "the loop stopped at the tool's time limit"
    await until(lambda: not list(tmp_path.glob("toolsuite-data-*")), 3)
    assert not list(tmp_path.glob("toolsuite-data-*"))


async def test_engine_work_cancelled_by_the_client_is_a_cancellation_not_a_timeout():
    from shared.errors import Cancelled

    stopped: list[BaseException] = []
    async with Client(build_engine_server(stopped), mode="legacy") as client:
        with anyio.move_on_after(0.3):
            await client.call_tool("long_loop", {"data_uri": "data:text/plain,hello"})
        await until(lambda: bool(stopped), 3)
    assert len(stopped) == 1 and isinstance(stopped[0], Cancelled)
    assert str(stopped[0]) == "the loop cancelled by the client"


def test_every_annotation_preset_gives_all_four_hints():
    from mcp_types import ToolAnnotations

    from shared import server

    presets = {name: value for name, value in vars(server).items() if isinstance(value, ToolAnnotations)}
    assert len(presets) == 8, sorted(presets)
    for name, preset in presets.items():
        hints = (preset.read_only_hint, preset.destructive_hint, preset.idempotent_hint, preset.open_world_hint)
        assert None not in hints, name
    assert presets["READ_ONLY_LOCAL"].read_only_hint and not presets["READ_ONLY_LOCAL"].open_world_hint
    assert presets["RUNS_CODE"].destructive_hint and not presets["RUNS_CODE"].idempotent_hint

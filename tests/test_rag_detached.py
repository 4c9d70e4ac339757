"""tool-rag driven as agent hosts drive it: a fresh `tool-rag` stdio process for every call, ended with
SIGTERM while its stdin is open. The vectors are built by a detached builder process that outlives
the calls, and every server process exits promptly and cleanly, leaving nothing but that builder."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from tests.conftest import BIN
from tests.sigterm_stdio import SigtermStdio, builders_for, group_members
from tests.test_rag import DOCS

pytestmark = pytest.mark.anyio


def host_env(root: Path, cache: Path, **extra: str) -> dict[str, str]:
    """What a host passes: a few inherited names plus the server's configured environment."""
    env = {k: os.environ[k] for k in ("HOME", "PATH", "LANG") if k in os.environ}
    return {**env, "TOOLSUITE_ROOTS": str(root), "TOOLSUITE_CACHE_DIR": str(cache), **extra}


async def call(env: dict[str, str], tool: str, arguments: dict) -> tuple[object, SigtermStdio]:
    transport = SigtermStdio([str(BIN / "tool-rag")], env)
    async with Client(transport) as client:
        result = await client.call_tool(tool, arguments)
    return result, transport


def stats_text(result: object) -> str:
    return result.content[-1].text  # type: ignore[attr-defined]


async def test_the_semantic_index_completes_across_short_lived_calls(root: Path, tmp_path: Path):
    (root / "collection.json").write_text(json.dumps(DOCS, ensure_ascii=False), encoding="utf-8")
    env = host_env(root, tmp_path / "cache", TOOLSUITE_RAG_EMBEDDER="use")
    texts = []
    seen_builders: set[int] = set()
    for _ in range(30):
        result, transport = await call(env, "rag_document_stats", {"json_path": "collection.json"})
        assert transport.returncode == 0 and transport.exit_seconds < 3, transport.stderr_text()
        assert group_members(transport.process.pid) == []  # nothing of the server's own is left behind
        texts.append(stats_text(result))
        seen_builders.update(builders_for(root / "collection.json"))
        if "Semantic index (use): complete" in texts[-1]:
            break
        await anyio.sleep(0.5)
    assert "Semantic index (use): complete" in texts[-1], texts[-1]
    assert "Vector builder: done" in texts[-1] and seen_builders  # a detached builder did the work
    for _ in range(50):  # it exits once the work is done
        if not builders_for(root / "collection.json"):
            break
        await anyio.sleep(0.1)
    assert builders_for(root / "collection.json") == []
    found, _transport = await call(env, "rag_search", {"query": "regulation of live streaming e-commerce",
                                                      "json_path": "collection.json"})
    top = found.structured_content["results"][0]  # type: ignore[attr-defined]
    assert top["title"] == "直播电商监管办法" and top["dense_rank"] is not None


async def test_sigterm_during_a_build_exits_at_once_and_the_next_call_resumes(root: Path, tmp_path: Path):
    records = [{"title": f"文档{i}", "page_body": f"第{i}篇文章讨论直播电商与平台责任，以及消费者权益保护。" * 12}
               for i in range(6000)]
    (root / "big.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    cache = tmp_path / "cache"
    env = host_env(root, cache, TOOLSUITE_RAG_EMBEDDER="none")
    transport = SigtermStdio([str(BIN / "tool-rag")], env)

    def documents_taken_in() -> int:
        folders = list((cache / "rag").glob("*/index.sqlite")) if (cache / "rag").exists() else []
        if not folders:
            return 0
        try:
            with sqlite3.connect(folders[0]) as db:
                return db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
        except sqlite3.OperationalError:  # the schema is not there yet
            return 0

    async with Client(transport) as client, anyio.create_task_group() as group:
        async def search() -> None:
            try:
                result = await client.call_tool("rag_search", {"query": "直播", "json_path": "big.json"})
            except Exception:  # the connection ended under the call
                return
            # or the server answered the call it was stopping before it exited, and said so
            assert result.is_error and "stop" in result.content[-1].text.lower(), result.content[-1].text

        group.start_soon(search)
        while documents_taken_in() == 0:  # the build is under way
            await anyio.sleep(0.05)
        transport.process.send_signal(15)
        with anyio.fail_after(10):
            await transport.process.wait()
        group.cancel_scope.cancel()
    assert transport.returncode == 0 and transport.exit_seconds is not None
    assert re.search(r"SIGTERM: exiting", transport.stderr_text())
    stopped = documents_taken_in()
    assert 0 < stopped < len(records)
    time.sleep(0.5)
    assert documents_taken_in() == stopped  # the build stopped with the process: no thread lives on
    result, _ = await call(env, "rag_document_stats", {"json_path": "big.json"})
    assert result.structured_content["documents"] == len(records)  # type: ignore[attr-defined]

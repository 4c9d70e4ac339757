"""tool-rag's PostgreSQL store against a real PostgreSQL with pgvector (tests/pg_server.py): the same
answers as the SQLite store, updates, builds coordinated across processes through the database,
the detached vector builder, stateless HTTP replicas sharing one index, and the faults an operator
meets (a wrong password, an unreachable database, a database restarted mid-search)."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from mcp import Client

from servers.rag import indexing, lexemes
from servers.rag.pg_database import lock_key, redacted
from servers.rag.pg_store import PostgresBackend
from servers.rag.server import build
from servers.rag.service import RagService
from servers.rag.sqlite_store import SqliteBackend
from tests.conftest import REPO
from tests.http_process import environment, free_port, start
from tests.pg_server import PASSWORD, LocalPostgres

pytestmark = pytest.mark.anyio

TOPICS = ["直播电商与平台责任", "Redis 配置与持久化", "Transformer 位置编码", "学术搜索网站", "未成年人直播打赏",
          "large language model evaluation", "Python decorators and closures"]


def record(i: int) -> dict[str, str]:
    topic = TOPICS[i % len(TOPICS)]
    body = (f"第{i}篇文章讨论{topic}。" + f"This article number {i} covers {topic} in depth, don't skip it. " * 2
            + f"编号{i:04d}的案例说明了{topic}的要点。" * 3) * (1 + i % 4)
    return {"title": f"{topic} ({i})", "page_body": body, "url": f"https://example.org/{i}"}


def collection_records(count: int = 24, duplicate: bool = True) -> list[dict[str, str]]:
    records = [record(i) for i in range(count)]
    if duplicate:
        records.append(dict(records[3]))  # an exact duplicate: equal BM25 scores, and ties must break alike
    else:
        records.append(record(count + 100))
    records.append({"title": "空文档", "page_body": ""})
    return records


def write_json(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return path


def write_lines(path: Path, records: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")
    return path


# Chinese and English questions: the English ones about Chinese text go through dictionary translation
# (which asks the store which headwords it holds) and are fused with the USE chunk vectors.
QUERIES = ["直播电商 平台责任", "Redis 持久化", "位置编码", "language model evaluation", "decorators closures",
           "未成年人 打赏 0007", "don't skip", "Which websites help with academic search?", "编号0003",
           "tipping by minors on live streams", "responsibility of e-commerce platforms"]


async def _answers(service: RagService, json_path: str) -> list[tuple[bool, str, Any]]:
    """Every text and structured result a set of calls returns (build times left out: they differ)."""
    out: list[tuple[bool, str, Any]] = []
    async with Client(build(service)) as client:
        calls: list[tuple[str, dict[str, Any]]] = []
        for query in QUERIES:
            calls.append(("rag_search", {"query": query, "json_path": json_path, "top_k": 8}))
            calls.append(("rag_search", {"query": query, "json_path": json_path, "top_k": 12, "diverse": False}))
        calls += [("rag_search", {"query": "直播", "json_path": json_path, "title_contains": "平台"}),
                  ("rag_get_context", {"query": "直播电商 平台责任 Redis", "json_path": json_path, "max_tokens": 900}),
                  ("rag_get_document", {"json_path": json_path, "document_index": 5, "max_chars": 300}),
                  ("rag_get_neighbours", {"json_path": json_path, "document_index": 3, "chunk_index": 0})]
        for name, arguments in calls:
            result = await client.call_tool(name, arguments)
            out.append((result.is_error, result.content[-1].text, result.structured_content))
        stats = (await client.call_tool("rag_document_stats", {"json_path": json_path})).structured_content
    stats.pop("build_seconds")
    out.append((False, "", stats))
    return out


async def test_both_stores_give_the_same_citations_and_text(root: Path, pg_url: str, monkeypatch):
    """The default engine (BM25 with dictionary translation, fused with USE chunk vectors for questions
    in another language than the collection) on both stores: every text block and structured result
    is identical, the ties of a duplicate record included."""
    monkeypatch.setenv("TOOLSUITE_RAG_BUILDER", "thread")
    path = write_json(root / "c.json", collection_records())
    answers = []
    for backend in (SqliteBackend(), PostgresBackend(pg_url)):
        service = RagService(backend)
        service.ready(path)
        collection = service.collections.get(path)
        collection.wait_for_vectors(timeout=300)
        collection.builds.join(30)
        state = collection.state()
        assert state.dense_complete and collection.embedder == "use", (state, collection.embedder)
        answers.append(await _answers(service, "c.json"))
    sqlite, postgres = answers
    assert not any(error for error, _text, _data in sqlite), [t for e, t, _d in sqlite if e]
    assert sum(len(data["results"]) for _e, _t, data in sqlite[:len(QUERIES) * 2]) > 50
    fused = [r for _e, _t, data in sqlite[:len(QUERIES) * 2] for r in data["results"] if r["dense_rank"] is not None]
    assert fused, "the English questions were meant to be ranked with the vectors too"
    for one, other in zip(sqlite, postgres, strict=True):
        assert one == other


async def test_updates_keep_both_stores_identical(root: Path, pg_url: str, lexical_only):
    """Appended, edited, removed and reordered records: after each change the two stores rank alike
    (the term statistics of removed content are given back exactly) and report the same state."""
    path = root / "c.jsonl"
    records = [record(i) for i in range(30)] + [record(7), record(7)]  # duplicates: BM25 ties break alike
    versions = [records,
                records + [record(i) for i in range(30, 36)],
                [r for i, r in enumerate(records) if i % 5] + [record(40)],
                list(reversed(records))]
    services = [RagService(SqliteBackend()), RagService(PostgresBackend(pg_url))]
    for version in versions:
        write_lines(path, version)
        time.sleep(0.01)  # another mtime
        results = []
        for service in services:
            state = service.stats(path)
            found = [[(p.document_index, p.chunk_index, p.relevance_score, p.content)
                      for p in service.search(path, query, top_k=20, diverse=False).results] for query in QUERIES]
            results.append(((state.documents, state.chunks, state.cjk_share, state.updated_documents), found))
        assert results[0] == results[1]
        assert results[0][0][0] == len(version)


def test_lexemes_split_terms_as_fts5_unicode61_does():
    terms = ["don't", "it’s", "直播", "x2y", "café", "a_b", "2024"]
    connection = sqlite3.connect(":memory:")
    connection.execute("CREATE VIRTUAL TABLE t USING fts5(x, tokenize='unicode61 remove_diacritics 0')")
    connection.execute("INSERT INTO t VALUES (?)", (" ".join(terms),))
    connection.execute("CREATE VIRTUAL TABLE v USING fts5vocab(t, 'instance')")
    fts5 = [row[0] for row in connection.execute("SELECT term FROM v ORDER BY offset")]
    assert lexemes.pieces(terms) == fts5


def test_settings_errors_hide_the_password():
    url = "postgresql://toolsuite:s3cret-pw@db.internal:5432/rag"
    assert redacted(url) == "postgresql://toolsuite:***@db.internal:5432/rag"
    assert lock_key("abc", "build") == lock_key("abc", "build") != lock_key("abc", "vectors")


async def test_a_wrong_password_or_unreachable_database_is_a_clear_error_and_the_server_still_serves(
        root: Path, postgres_server: LocalPostgres, monkeypatch, lexical_only):
    write_json(root / "c.json", collection_records(6))
    nothing_there = free_port()
    cases = {"wrong password": (postgres_server.url("postgres", password="not-the-password"),
                                "password authentication failed"),
             "unreachable": (postgres_server.url("postgres", port=nothing_there), "refused")}
    for label, (url, reason) in cases.items():
        monkeypatch.setenv("TOOLSUITE_RAG_STORE", url)
        started = time.monotonic()
        async with Client(build()) as client:
            tools = await client.list_tools()
            assert "rag_search" in [t.name for t in tools.tools]
            failed = await client.call_tool("rag_search", {"query": "直播", "json_path": "c.json"})
            listing = await client.call_tool("rag_list_collections", {})
        assert failed.is_error, label
        message = failed.content[-1].text
        assert "TOOLSUITE_RAG_STORE=postgresql://toolsuite:***@127.0.0.1:" in message, message
        assert reason in message and "not-the-password" not in message and PASSWORD not in message, message
        assert not listing.is_error and listing.structured_content["collections"], label
        assert any("index states are unknown" in note for note in listing.structured_content["notes"])
        assert time.monotonic() - started < 30
    monkeypatch.setenv("TOOLSUITE_RAG_STORE", "mysql://root:hunter22@db/rag")
    async with Client(build()) as client:
        bad = await client.call_tool("rag_search", {"query": "直播", "json_path": "c.json"})
    assert bad.is_error and "TOOLSUITE_RAG_STORE" in bad.content[-1].text and "hunter22" not in bad.content[-1].text


def test_a_database_restart_mid_search_fails_clearly_or_retries_and_the_next_call_works(root: Path, monkeypatch,
                                                                                       lexical_only):
    path = write_json(root / "c.json", collection_records(40))
    with LocalPostgres() as server:
        url = server.create_database("restart")
        monkeypatch.setenv("TOOLSUITE_RAG_STORE", url)
        service = RagService(PostgresBackend(url))
        expected = [p.citation for p in service.search(path, "直播电商 平台责任").results]
        outcomes: list[str] = []
        stop = threading.Event()

        def searching() -> None:
            while not stop.is_set():
                try:
                    found = service.search(path, "直播电商 平台责任").results
                    outcomes.append("ok" if [p.citation for p in found] == expected else "wrong")
                except Exception as exc:  # every failure must be the clear one
                    outcomes.append(f"{type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=searching) for _ in range(3)]
        for thread in threads:
            thread.start()
        time.sleep(0.5)
        server.restart()
        time.sleep(1.0)
        stop.set()
        for thread in threads:
            thread.join(60)
        assert [p.citation for p in service.search(path, "直播电商 平台责任").results] == expected
    failures = [o for o in outcomes if o != "ok"]
    assert "wrong" not in outcomes
    assert all(o.startswith("StoreUnavailable: the RAG index store in PostgreSQL (TOOLSUITE_RAG_STORE=") and
               PASSWORD not in o for o in failures), failures
    assert outcomes.count("ok") > 3


def test_a_replica_answers_from_what_another_has_committed_and_says_so(root: Path, pg_url: str, monkeypatch,
                                                                       lexical_only):
    monkeypatch.setattr(indexing, "BATCH_DOCS", 5)
    path = write_json(root / "c.json", collection_records(30))
    building, other = RagService(PostgresBackend(pg_url)), RagService(PostgresBackend(pg_url))
    two_batches, release = threading.Event(), threading.Event()
    batches = []

    def progress(done: float, _total: float | None, _message: str | None) -> None:
        batches.append(done)
        if len(batches) == 2:
            two_batches.set()
            release.wait(60)

    builder = threading.Thread(target=building.ready, args=(path,), kwargs={"progress": progress})
    builder.start()
    try:
        assert two_batches.wait(60)
        started = time.monotonic()
        early = other.search(path, "直播电商 平台责任", top_k=10)
        assert time.monotonic() - started < 5  # it did not wait for the build
        assert early.index.documents == 10 and early.results
        assert all(p.document_index < 10 for p in early.results)
        assert any("another process is building this collection's index: 10 records" in n for n in early.notes)
        assert not other.stats(path).lexical_complete
    finally:
        release.set()
        builder.join(60)
    late = other.search(path, "直播电商 平台责任", top_k=10)
    assert late.index.documents == 32 and not late.notes


BUILD_AND_DIE = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from servers.rag import indexing
    from servers.rag.service import RagService
    indexing.BATCH_DOCS = 5
    service = RagService()
    def progress(done, total, message):
        print("batch", int(done), flush=True)
        time.sleep(0.5)
    service.ready(Path(sys.argv[1]), progress=progress)
    print("finished", flush=True)
""")


def test_a_killed_builder_resumes_from_its_last_committed_batch_on_another_process(root: Path, pg_url: str,
                                                                                    monkeypatch, lexical_only):
    path = write_json(root / "c.json", collection_records(40))
    process = subprocess.Popen([sys.executable, "-c", BUILD_AND_DIE, str(path)], stdout=subprocess.PIPE, text=True,
                               cwd=str(REPO), env={**os.environ, "PYTHONPATH": str(REPO)})
    assert process.stdout is not None
    for line in process.stdout:
        if line.strip() == "batch 15":
            process.send_signal(signal.SIGKILL)  # mid-build: three batches committed, the lock held
            break
    process.wait(30)
    backend = PostgresBackend(pg_url)
    store = backend.open(next(iter(_index_keys(backend))))
    kept = {key: doc for key, doc in backend.database.read(
        lambda c: c.execute(f"SELECT key, id FROM {store.schema}.docs").fetchall())}
    assert 15 <= len(kept) < 42 and store.source() is None
    assert not store.updating()  # the killed process's session ended: its lock is gone

    made: list[str] = []
    original = indexing.entry
    monkeypatch.setattr(indexing, "entry", lambda key, *a: made.append(key) or original(key, *a))
    service = RagService(backend)
    resumed = service.search(path, "直播电商 平台责任", top_k=10)
    assert resumed.index.documents == 42 and not resumed.notes
    assert len(made) == 42 - len(kept)  # nothing committed before the kill was chunked again
    after = dict(backend.database.read(lambda c: c.execute(f"SELECT key, id FROM {store.schema}.docs").fetchall()))
    assert all(after[key] == doc for key, doc in kept.items())  # same ids, so the same vector rows later
    fresh = RagService(SqliteBackend()).search(path, "直播电商 平台责任", top_k=10)
    assert [(p.citation, p.content, p.relevance_score) for p in resumed.results] == \
        [(p.citation, p.content, p.relevance_score) for p in fresh.results]


def _index_keys(backend: PostgresBackend) -> list[str]:
    return [name.removeprefix("rag_") for (name,) in backend.database.read(lambda c: c.execute(
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'rag\\_%'").fetchall())]


def test_the_detached_vector_builder_builds_into_postgresql(root: Path, pg_url: str, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_BUILDER", "detached")
    path = write_json(root / "c.json", collection_records(12))
    service = RagService()
    first = service.ready(path)
    assert first.stats.vector_builder in ("running", "pending", "done")
    collection = service.collections.get(path)
    collection.wait_for_vectors(timeout=300)
    state = collection.state()
    assert state.dense_complete, (state, collection.vector_error)
    store = collection.store
    counts = store.database.read(lambda c: c.execute(
        f"SELECT count(*), min(vector_dims(embedding)) FROM {store.schema}.chunk_vectors").fetchone())
    assert counts == (state.chunks, 512)  # USE's dimension
    # The builder exits once done and clears its pid; this process sees the state row up to
    # STATE_TTL late, so both are waited for.
    deadline = time.monotonic() + 30
    while (store.builder_running() or store.builder_status().pid is not None) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not store.builder_running() and store.builder_status().pid is None


def _call(url: str, name: str, arguments: dict[str, Any]) -> dict[str, Any]:
    body = {"jsonrpc": "2.0", "id": 1, "method": "tools/call", "params": {"name": name, "arguments": arguments}}
    response = httpx.post(url, json=body, timeout=120,
                          headers={"accept": "application/json, text/event-stream", "content-type": "application/json"})
    assert response.status_code == 200, response.text
    text = response.text
    if text.startswith(("event:", "data:")):
        text = next(line[5:] for line in text.splitlines() if line.startswith("data:"))
    return json.loads(text)["result"]


def test_stateless_http_replicas_share_one_index(root: Path, tmp_path: Path, pg_url: str):
    write_json(root / "c.json", collection_records(20))
    env = environment(TOOLSUITE_RAG_STORE=pg_url, TOOLSUITE_RAG_EMBEDDER="none")
    replicas = [start("tool-rag", tmp_path, "--stateless", env=env) for _ in range(2)]
    try:
        arguments = {"query": "直播电商 平台责任", "json_path": "c.json", "top_k": 6}
        answers = [_call(replica.url, "rag_search", arguments) for replica in replicas]
        answers += [_call(replica.url, "rag_search", arguments) for replica in reversed(replicas)]
        stats = [_call(replica.url, "rag_document_stats", {"json_path": "c.json"}) for replica in replicas]
    finally:
        for replica in replicas:
            replica.stop()
    assert not any(answer.get("isError") for answer in answers), answers[0]
    assert len({json.dumps(answer["structuredContent"], sort_keys=True) for answer in answers}) == 1
    assert len({answer["content"][-1]["text"] for answer in answers}) == 1
    # One build, made by the first replica's first call: the second found it complete.
    assert stats[0]["structuredContent"] == stats[1]["structuredContent"]
    assert stats[0]["structuredContent"]["documents"] == 22


def test_vector_rankings_use_the_hnsw_index_above_the_exact_threshold(root: Path, pg_url: str, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_BUILDER", "thread")
    path = write_json(root / "c.json", collection_records(60, duplicate=False))
    service = RagService(PostgresBackend(pg_url))
    service.ready(path)
    collection = service.collections.get(path)
    collection.wait_for_vectors(timeout=300)
    store = collection.store
    plans: list[str] = []
    original = store.database.read

    def explained(work):
        def run(connection):
            execute = connection.execute

            def execute_and_explain(statement, params=None):
                if "<#>" in statement:
                    plans.append(" ".join(r[0] for r in execute("EXPLAIN " + statement, params).fetchall()))
                return execute(statement, params)

            connection.execute = execute_and_explain
            try:
                return work(connection)
            finally:
                del connection.execute

        return original(run)

    monkeypatch.setattr(store.database, "read", explained)
    from servers.rag import embedders

    vector = embedders.get("use").embed(["直播电商 平台责任"])[0]
    exact = store.nearest(vector, 20)
    assert not plans  # ranked in the process, on its copy of the vectors
    monkeypatch.setenv("TOOLSUITE_RAG_PG_EXACT_ROWS", "0")
    approximate = store.nearest(vector, 20)
    assert "Index Scan using chunk_vectors_hnsw" in plans[-1]
    assert len(approximate) == 20 and len(set(approximate) & set(exact)) >= 18

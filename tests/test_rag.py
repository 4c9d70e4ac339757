"""tool-rag through the MCP in-memory client, on small collections made in code."""

from __future__ import annotations

import itertools
import json
import time
from pathlib import Path

import anyio
import pytest
from mcp import Client

from servers.rag.chunker import chunk_document
from servers.rag.server import build

pytestmark = pytest.mark.anyio

DOCS = [
    {"title": "Redis配置与优化",
     "page_body": "Redis是一个高性能的键值数据库。" * 20 + "持久化可以使用RDB快照或AOF日志。" * 10},
    {"title": "直播电商监管办法", "page_body": "市场监管总局发布直播电商监督管理办法，明确平台责任。" * 25},
    {"title": "Transformer位置编码", "page_body": "位置编码让模型理解序列顺序，正弦函数生成不同频率的编码。" * 20},
    {"title": "Python decorators", "content": "A decorator wraps a function to change its behaviour. " * 40},
    {"title": "空文档", "page_body": ""},
    {"title": "学术搜索网站推荐", "text": "研究生需要掌握学术搜索，常用网站包括知网、谷歌学术和万方数据。" * 15},
]


@pytest.fixture
def collection(root: Path) -> Path:
    path = root / "collection.json"
    path.write_text(json.dumps(DOCS, ensure_ascii=False), encoding="utf-8")
    return path


async def test_search_keeps_the_reference_layout_and_citations(collection, lexical_only):
    async with Client(build()) as client:
        result = await client.call_tool("rag_search", {"query": "直播电商 平台责任", "json_path": "collection.json",
                                                       "top_k": 3})
    assert not result.is_error, result.content[0].text
    text = result.content[0].text
    assert text.startswith("=== RAG Search Results ===\nQuery: '直播电商 平台责任'\nSource File: collection.json\n")
    assert "Result 1\nCitation: [long_context: \"直播电商监管办法\", chunk 0]" in text
    assert "Document Index: 1\nChunk Index: 0\nTitle: 直播电商监管办法" in text
    assert "--- Content ---\n(Cite as: [long_context: \"直播电商监管办法\", chunk 0])" in text
    first = result.structured_content["results"][0]
    assert first["document_index"] == 1 and 0 < first["relevance_score"] <= 1


async def test_two_character_chinese_words_match(collection, lexical_only):
    async with Client(build()) as client:
        result = await client.call_tool("rag_search", {"query": "编码", "json_path": "collection.json",
                                                       "diverse": False, "top_k": 1})
    assert result.structured_content["results"][0]["title"] == "Transformer位置编码"


async def test_diversity_spreads_over_documents_and_plain_top_k_does_not(collection, lexical_only):
    async with Client(build()) as client:
        diverse = await client.call_tool("rag_search", {"query": "Redis 数据库 持久化 直播 编码 搜索",
                                                        "json_path": "collection.json", "top_k": 6, "min_docs": 4,
                                                        "max_per_doc": 2})
        plain = await client.call_tool("rag_search", {"query": "Redis", "json_path": "collection.json", "top_k": 3,
                                                      "diverse": False})
    results = diverse.structured_content["results"]
    documents = [r["document_index"] for r in results]
    assert len(set(documents)) >= 4 and all(documents.count(d) <= 2 for d in documents)
    assert [r["relevance_score"] for r in results] == sorted((r["relevance_score"] for r in results), reverse=True)
    assert {r["document_index"] for r in plain.structured_content["results"]} == {0}


async def test_context_respects_the_token_budget(collection, lexical_only):
    async with Client(build()) as client:
        small = await client.call_tool("rag_get_context", {"query": "直播电商", "json_path": "collection.json",
                                                           "max_tokens": 200})
        large = await client.call_tool("rag_get_context", {"query": "直播电商", "json_path": "collection.json",
                                                           "max_tokens": 4000})
    assert small.content[0].text.startswith("=== RAG Context for Query ===")
    assert "--- Retrieved Context with Sources ---" in small.content[0].text
    assert small.structured_content["tokens"] <= 260 and large.structured_content["tokens"] > 200
    assert "Source 1\nCitation: [long_context:" in large.content[0].text


async def test_stats_documents_and_neighbours(collection, lexical_only):
    async with Client(build()) as client:
        stats = await client.call_tool("rag_document_stats", {"json_path": "collection.json.chunks.db"})
        whole = await client.call_tool("rag_get_document", {"json_path": "collection.json", "document_index": 3})
        around = await client.call_tool("rag_get_neighbours", {"json_path": "collection.json", "document_index": 0,
                                                               "chunk_index": 0})
    data = stats.structured_content
    assert data["documents"] == 6 and data["lexical_complete"] and data["embedder"] == "none"
    assert data["chunks"] >= 6 and "Documents: 6" in stats.content[0].text
    assert whole.structured_content["title"] == "Python decorators"
    assert whole.structured_content["text"].startswith("A decorator wraps")
    assert [c["chunk_index"] for c in around.structured_content["chunks"]] == [0, 1]


async def test_title_filter(collection, lexical_only):
    async with Client(build()) as client:
        result = await client.call_tool("rag_search", {"query": "数据库 网站", "json_path": "collection.json",
                                                       "title_contains": "学术"})
    assert {r["title"] for r in result.structured_content["results"]} == {"学术搜索网站推荐"}


async def test_jsonl_and_documents_object_and_index_reuse(root: Path, lexical_only, tmp_path: Path):
    (root / "lines.jsonl").write_text("\n".join(json.dumps(d, ensure_ascii=False) for d in DOCS), encoding="utf-8")
    (root / "wrapped.json").write_text(json.dumps({"documents": DOCS}, ensure_ascii=False), encoding="utf-8")
    async with Client(build()) as client:
        for name in ("lines.jsonl", "wrapped.json"):
            result = await client.call_tool("rag_search", {"query": "decorator", "json_path": name})
            assert result.structured_content["results"][0]["document_index"] == 3, name
    folders = sorted((tmp_path / "cache" / "rag").iterdir())
    assert len(folders) == 2  # keyed by the file's bytes: one index per file
    async with Client(build()) as client:  # a new engine (as in a new process) reuses the index on disk
        await client.call_tool("rag_search", {"query": "decorator", "json_path": "wrapped.json"})
    assert sorted((tmp_path / "cache" / "rag").iterdir()) == folders


async def test_a_changed_file_is_never_served_from_the_old_index(collection, lexical_only):
    async with Client(build()) as client:
        before = await client.call_tool("rag_search", {"query": "Kubernetes", "json_path": "collection.json"})
        collection.write_text(json.dumps([*DOCS, {"title": "Kubernetes", "page_body": "Kubernetes 集群调度。" * 20}],
                                         ensure_ascii=False), encoding="utf-8")
        after = await client.call_tool("rag_search", {"query": "Kubernetes", "json_path": "collection.json"})
    assert before.structured_content["results"] == []
    assert after.structured_content["results"][0]["title"] == "Kubernetes"


async def test_the_use_vectors_finish_in_the_background_and_rank_cross_lingual_questions(collection, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "use")
    async with Client(build()) as client:
        first = await client.call_tool("rag_search", {"query": "function wrapper", "json_path": "collection.json"})
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            stats = await client.call_tool("rag_document_stats", {"json_path": "collection.json"})
            if stats.structured_content["dense_complete"]:
                break
            await anyio.sleep(0.2)
        later = await client.call_tool("rag_search", {"query": "function wrapper", "json_path": "collection.json"})
        chinese = await client.call_tool("rag_search", {"query": "位置编码", "json_path": "collection.json"})
    assert not first.is_error
    assert stats.structured_content["dense_complete"] and stats.structured_content["dense_vectors"] > 0
    assert "Semantic index (use): complete" in stats.content[0].text
    top = later.structured_content["results"][0]
    assert top["title"] == "Python decorators" and top["dense_rank"] is not None  # English on a Chinese collection
    assert chinese.structured_content["results"][0]["title"] == "Transformer位置编码"
    assert all(r["dense_rank"] is None for r in chinese.structured_content["results"])  # same language: BM25 alone


async def test_wire_openai_embedder_batches_requests(collection, monkeypatch, fake_openai):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "openai")
    monkeypatch.setenv("TOOLSUITE_EMBEDDING_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("TOOLSUITE_EMBEDDING_MODEL", "fake-embed")
    monkeypatch.setenv("TOOLSUITE_RAG_EMBED_BATCH", "4")
    async with Client(build()) as client:
        await client.call_tool("rag_search", {"query": "Redis", "json_path": "collection.json"})
        for _ in range(100):
            stats = await client.call_tool("rag_document_stats", {"json_path": "collection.json"})
            if stats.structured_content["dense_complete"]:
                break
            await anyio.sleep(0.05)
    assert stats.structured_content["dense_complete"] and stats.structured_content["embedder"] == "openai"
    embedding_calls = [r for r in fake_openai.requests if r.path.endswith("/embeddings")]
    sizes = [len(r.json()["input"]) for r in embedding_calls]
    assert max(sizes) == 4 and sum(sizes) >= stats.structured_content["chunks"]


def test_chunks_always_carry_new_text_and_never_only_a_title():
    body = "。".join(f"第{i}句话讲述一个不同的事实，内容各不相同" for i in range(120)) + "。"
    chunks = chunk_document(0, body)
    assert len(chunks) > 3
    for previous, current in itertools.pairwise(chunks):
        assert current.text not in previous.text  # new text in every chunk
    assert all(c.chunk_index == i for i, c in enumerate(chunks))
    assert chunk_document(1, "") == []
    assert chunks[0].indexed("标题").startswith("标题\n")


async def test_bad_collections_are_clear_errors(root: Path, lexical_only):
    (root / "empty.json").write_text("")
    (root / "broken.json").write_text('[{"title": "a", "page_body": "x"}, {')
    (root / "shape.json").write_text('{"items": []}')
    (root / "folder").mkdir()
    (root / "weird.json").write_text(json.dumps([{"title": 5, "page_body": {"nested": ["values", 1]}},
                                                 ["not", "a", "record"], None]))
    async with Client(build()) as client:
        for name, expected in {"missing.json": "collection not found", "folder": "is a directory",
                               "empty.json": "empty", "broken.json": "not valid JSON",
                               "shape.json": "documents", "../outside.json": "outside the allowed roots"}.items():
            result = await client.call_tool("rag_search", {"query": "x", "json_path": name})
            assert result.is_error and expected in result.content[0].text, (name, result.content[0].text)
        weird = await client.call_tool("rag_search", {"query": "values nested", "json_path": "weird.json"})
        assert not weird.is_error and weird.structured_content["results"][0]["document_index"] == 0
        for arguments, field in (({"top_k": 0}, "top_k"), ({"top_k": 10_000}, "top_k"), ({"query": ""}, "query")):
            bad = await client.call_tool("rag_search", {"query": "x", "json_path": "weird.json", **arguments})
            assert bad.is_error and field in bad.content[0].text
        negative = await client.call_tool("rag_get_context", {"query": "x", "json_path": "weird.json",
                                                              "max_tokens": -5})
        assert negative.is_error and "max_tokens" in negative.content[0].text


def _build_in_another_process(path: str, cache_dir: str, roots: str) -> int:
    import os

    os.environ.update({"TOOLSUITE_CACHE_DIR": cache_dir, "TOOLSUITE_ROOTS": roots, "TOOLSUITE_RAG_EMBEDDER": "none"})
    from servers.rag.service import RagService

    return RagService().stats(Path(path)).chunks


def test_two_processes_building_one_index_do_not_corrupt_it(root: Path, tmp_path: Path):
    import multiprocessing

    records = [{"title": f"文档{i}", "page_body": f"第{i}篇文章讨论直播电商与平台责任。" * 30} for i in range(400)]
    path = root / "big.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    context = multiprocessing.get_context("spawn")
    with context.Pool(2) as pool:
        results = pool.starmap(_build_in_another_process,
                               [(str(path), str(tmp_path / "cache"), str(root))] * 2)
    assert results[0] == results[1] > 0
    import sqlite3

    (folder,) = (tmp_path / "cache" / "rag").iterdir()
    with sqlite3.connect(folder / "index.sqlite") as db:
        chunks = db.execute("SELECT COUNT(*), COUNT(DISTINCT doc_id || '-' || chunk_index) FROM chunks").fetchone()
        docs = db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]
    assert chunks[0] == chunks[1] == results[0] and docs == 400


async def test_structured_results_carry_every_field_of_the_engine_results(collection, lexical_only):
    import dataclasses

    from servers.rag.service import CollectionStats, DocumentView, Passage, SearchResult

    async with Client(build()) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
        search = await client.call_tool("rag_search", {"query": "Redis", "json_path": "collection.json"})
        stats = await client.call_tool("rag_document_stats", {"json_path": "collection.json"})
        around = await client.call_tool("rag_get_neighbours", {"json_path": "collection.json", "document_index": 0,
                                                               "chunk_index": 0})
    names = {cls: {f.name for f in dataclasses.fields(cls)} for cls in (SearchResult, CollectionStats, DocumentView,
                                                                         Passage)}
    assert set(tools["rag_search"].output_schema["properties"]) == names[SearchResult] == set(search.structured_content)
    assert set(stats.structured_content) == names[CollectionStats]
    assert set(tools["rag_document_stats"].output_schema["properties"]) == names[CollectionStats]
    assert set(around.structured_content) == names[DocumentView]
    assert set(search.structured_content["results"][0]) == names[Passage] == set(around.structured_content["chunks"][0])


async def test_a_build_that_runs_out_of_time_says_so_stops_and_resumes_later(root: Path, tmp_path: Path,
                                                                             lexical_only, monkeypatch):
    import sqlite3

    records = [{"title": f"文档{i}", "page_body": f"第{i}篇文章讨论直播电商与平台责任，以及消费者权益保护。" * 12}
               for i in range(8000)]
    (root / "big.json").write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")

    def documents_indexed() -> int:
        (folder,) = (tmp_path / "cache" / "rag").iterdir()
        with sqlite3.connect(folder / "index.sqlite") as db:
            return db.execute("SELECT COUNT(*) FROM docs").fetchone()[0]

    monkeypatch.setenv("TOOLSUITE_TOOL_TIMEOUT", "1")
    async with Client(build()) as client:
        late = await client.call_tool("rag_search", {"query": "直播", "json_path": "big.json"})
        assert late.is_error and "did not finish within 1 s (TOOLSUITE_TOOL_TIMEOUT)" in late.content[0].text
        await anyio.sleep(1.0)
        stopped = documents_indexed()
        await anyio.sleep(0.5)
        assert documents_indexed() == stopped < len(records)  # the build stopped with the call
        monkeypatch.setenv("TOOLSUITE_TOOL_TIMEOUT", "120")
        stats = await client.call_tool("rag_document_stats", {"json_path": "big.json"})
    assert stats.structured_content["documents"] == len(records) and stats.structured_content["lexical_complete"]

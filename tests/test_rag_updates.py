"""tool-rag on collections that change: appended, edited, reordered and half-written files, through
the engine and through the MCP in-memory client. Only new or changed records are chunked, tokenized
and embedded again; unchanged records keep their citations and their vectors."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from servers.rag import indexing
from servers.rag.server import build
from servers.rag.service import RagService
from tests.rag_stand_ins import embed_in_process

pytestmark = pytest.mark.anyio


def record(i: int, topic: str = "直播电商与平台责任") -> dict[str, str]:
    return {"title": f"文档{i}", "page_body": f"第{i}篇文章讨论{topic}，编号{i:05d}。" * 6}


def write_lines(path: Path, records: list[dict[str, Any]]) -> None:
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records), encoding="utf-8")


def append_lines(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "a", encoding="utf-8") as out:
        out.write("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))


@pytest.fixture
def entries_made(monkeypatch) -> list[str]:
    """The content keys the engine chunks and tokenizes (new content only, after the first build)."""
    made: list[str] = []
    original = indexing.entry

    def counting(key: str, *args: Any) -> Any:
        made.append(key)
        return original(key, *args)

    monkeypatch.setattr(indexing, "entry", counting)
    return made


def citations(service: RagService, path: Path, query: str) -> list[tuple[int, int, str, str]]:
    found = service.search(path, query, top_k=50, diverse=False).results
    return sorted((p.document_index, p.chunk_index, p.citation, p.content) for p in found)


def test_appended_records_are_indexed_alone_and_old_citations_stay(root: Path, lexical_only, entries_made):
    path = root / "lines.jsonl"
    write_lines(path, [record(i) for i in range(30)])
    service = RagService()
    before = citations(service, path, "直播电商")
    store = service.collections.get(path).store
    old_chunks = {c.chunk_id: c for c in store.chunks(range(1000))}
    entries_made.clear()
    append_lines(path, [record(i, "量子计算与超导芯片") for i in range(30, 33)])
    stats = service.stats(path)
    assert stats.documents == 33 and stats.updated_documents == 3 and stats.lexical_complete
    assert len(entries_made) == 3  # only the appended records were chunked and tokenized
    assert citations(service, path, "直播电商") == before  # unchanged records: same positions and citations
    assert {c.chunk_id: c for c in store.chunks(list(old_chunks))} == old_chunks  # same chunk rows (vector rows)
    new = service.search(path, "量子计算", top_k=3).results
    assert {p.document_index for p in new} == {30, 31, 32}


def test_edited_records_replace_their_old_text_everywhere(root: Path, lexical_only, entries_made):
    path = root / "lines.jsonl"
    records = [record(i) for i in range(20)]
    write_lines(path, records)
    service = RagService()
    service.ready(path)
    store = service.collections.get(path).store
    assert store.term_counts(["00007"]) == {"00007": 1}
    entries_made.clear()
    records[7] = {"title": "文档7", "page_body": "这一篇改写为讨论深海探测机器人。" * 6}
    write_lines(path, records)
    stats = service.stats(path)
    # Two records chunked: the new version, and the old one again, to hand its exact terms back to FTS5.
    assert stats.documents == 20 and stats.updated_documents == 1 and len(entries_made) == 2
    assert store.term_counts(["00007"]) == {}  # the old text's terms left the lexical index
    assert [p.document_index for p in service.search(path, "深海探测", top_k=2).results] == [7]
    assert service.document(path, 7).text.startswith("这一篇改写")
    assert len(store.document_keys()) == 20  # the old version is gone, not kept beside the new one


def test_reordered_records_keep_their_index_and_follow_their_positions(root: Path, lexical_only, entries_made):
    path = root / "array.json"
    records = [record(i) for i in range(12)] + [record(0)]  # a duplicate keeps a position of its own
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    service = RagService()
    assert service.stats(path).documents == 13
    entries_made.clear()
    path.write_text(json.dumps(list(reversed(records)), ensure_ascii=False), encoding="utf-8")
    stats = service.stats(path)
    assert stats.documents == 13 and stats.updated_documents == 0 and entries_made == []
    assert service.document(path, 0).title == "文档0" and service.document(path, 1).title == "文档11"
    hit = service.search(path, "00005", top_k=1).results[0]
    assert (hit.document_index, hit.title) == (7, "文档5")
    assert sorted(p.document_index for p in service.search(path, "00000", top_k=5).results) == [0, 12]


@pytest.mark.parametrize("cut", ["array", "lines"])
def test_a_file_cut_mid_write_is_never_served_as_complete(root: Path, lexical_only, cut: str):
    path = root / ("c.json" if cut == "array" else "c.jsonl")
    records = [record(i) for i in range(10)]
    whole = json.dumps(records, ensure_ascii=False) if cut == "array" else \
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
    grown = json.dumps([*records, record(10, "量子计算")], ensure_ascii=False) if cut == "array" else \
        whole + json.dumps(record(10, "量子计算"), ensure_ascii=False) + "\n"
    path.write_text(whole, encoding="utf-8")
    service = RagService()
    assert service.stats(path).documents == 10
    path.write_text(grown[: len(grown) - 40], encoding="utf-8")  # another program is still writing
    ready = service.ready(path)
    assert ready.stats.documents == 10 and ready.stats.source_warning
    assert any("last complete version (10 documents)" in note for note in ready.notes)
    assert service.search(path, "量子计算").results == []
    path.write_text(grown, encoding="utf-8")  # the write finished
    ready = service.ready(path)
    assert ready.stats.documents == 11 and ready.stats.source_warning is None and ready.notes == []
    assert service.search(path, "量子计算", top_k=1).results[0].document_index == 10


def test_a_cut_file_with_no_complete_version_is_an_error(root: Path, lexical_only):
    path = root / "c.jsonl"
    path.write_text(json.dumps(record(0), ensure_ascii=False) + "\n" + '{"title": "half', encoding="utf-8")
    with pytest.raises(indexing.SourceIncomplete, match="line 2 of the JSON Lines file is not valid JSON"):
        RagService().ready(path)


def test_a_record_appended_while_the_index_builds_is_taken_in(root: Path, lexical_only):
    path = root / "lines.jsonl"
    write_lines(path, [record(i) for i in range(indexing.BATCH_DOCS + 50)])
    appended = threading.Event()

    def progress(_done: float, _total: float | None, _message: str | None) -> None:
        if not appended.is_set():  # after the first batch, as another program would, at any moment
            appended.set()
            append_lines(path, [record(9999, "量子计算")])

    ready = RagService().ready(path, progress=progress)
    assert appended.is_set() and ready.stats.documents == indexing.BATCH_DOCS + 51
    assert RagService().search(path, "量子计算", top_k=1).results[0].document_index == indexing.BATCH_DOCS + 50


class CountingEmbedder:
    """A fast stand-in chunk embedder that counts what it is asked to embed."""

    name = "counting"
    dim = 4

    def __init__(self, delay: float = 0.0) -> None:
        self.texts: list[str] = []
        self.delay = delay

    def embed(self, texts: list[str]) -> Any:
        from servers.rag.numeric import numpy

        np = numpy()
        time.sleep(self.delay)
        self.texts += texts
        return np.stack([np.array([1.0, len(t) % 7, len(t) % 5, 1.0], dtype=np.float32) for t in texts])


@pytest.fixture
def counting(monkeypatch) -> CountingEmbedder:
    model = CountingEmbedder()
    embed_in_process(monkeypatch, model, batch=8)
    return model


def test_vectors_of_unchanged_content_are_reused(root: Path, counting: CountingEmbedder):
    path = root / "lines.jsonl"
    records = [record(i) for i in range(20)]
    write_lines(path, records)
    service = RagService()
    service.ready(path)
    collection = service.collections.get(path)
    collection.wait_for_vectors(timeout=60)
    first = collection.state()
    assert first.dense_complete and len(counting.texts) == first.chunks
    counting.texts.clear()
    records[3] = record(3, "深海探测机器人")
    write_lines(path, [*records, record(20, "量子计算")])
    service.ready(path)
    collection.wait_for_vectors(timeout=60)
    second = collection.state()
    changed = sum(1 for text in counting.texts if "深海探测" in text or "量子计算" in text)
    assert second.dense_complete and second.documents == 21
    assert changed == len(counting.texts) > 0  # only the edited and the appended records were embedded


def test_a_record_appended_while_vectors_build_does_not_restart_them(root: Path, counting: CountingEmbedder):
    counting.delay = 0.05
    path = root / "lines.jsonl"
    write_lines(path, [record(i) for i in range(40)])
    service = RagService()
    service.ready(path)
    collection = service.collections.get(path)
    while not counting.texts:  # the build is under way
        time.sleep(0.01)
    append_lines(path, [record(40, "量子计算")])
    service.ready(path)
    collection.wait_for_vectors(timeout=60)
    state = collection.state()
    assert state.dense_complete and state.documents == 41
    assert len(counting.texts) == len(set(counting.texts)) == state.chunks  # no chunk embedded twice


async def test_through_mcp_an_append_is_searchable_and_stats_say_what_changed(root: Path, lexical_only):
    path = root / "lines.jsonl"
    write_lines(path, [record(i) for i in range(10)])
    async with Client(build()) as client:
        await client.call_tool("rag_document_stats", {"json_path": "lines.jsonl"})
        append_lines(path, [record(10, "量子计算"), record(11, "量子计算")])
        found = await client.call_tool("rag_search", {"query": "量子计算", "json_path": "lines.jsonl"})
        stats = await client.call_tool("rag_document_stats", {"json_path": "lines.jsonl"})
    assert {r["document_index"] for r in found.structured_content["results"]} == {10, 11}
    assert stats.structured_content["updated_documents"] == 2 and stats.structured_content["documents"] == 12
    assert "Last lexical update: 2 records in" in stats.content[0].text


def test_a_builder_stops_when_the_file_changes_unseen_and_the_next_call_resumes_it(root: Path,
                                                                                     counting: CountingEmbedder):
    counting.delay = 0.05
    path = root / "lines.jsonl"
    write_lines(path, [record(i) for i in range(40)])
    service = RagService()
    service.ready(path)
    collection = service.collections.get(path)
    while not counting.texts:  # the build is under way
        time.sleep(0.01)
    append_lines(path, [record(40, "量子计算")])  # no call takes the change in
    collection.builds.join(timeout=30)
    stopped = collection.state()
    assert not stopped.dense_complete and 0 < stopped.dense_vectors < stopped.chunks  # it stopped part way
    assert collection.store.builder_status().pid is None and collection.vector_error is None
    service.ready(path)  # the next call updates the index and starts the build again
    collection.wait_for_vectors(timeout=60)
    state = collection.state()
    assert state.dense_complete and state.documents == 41
    assert len(counting.texts) == len(set(counting.texts)) == state.chunks  # resumed: nothing embedded twice


def test_one_builder_per_index(root: Path, lexical_only):
    from servers.rag import builder

    path = root / "lines.jsonl"
    write_lines(path, [record(i) for i in range(3)])
    service = RagService()
    service.ready(path)
    store = service.collections.get(path).store
    with store.vector_lock(wait=1):
        assert store.builder_running()
        assert builder.serve(store, path, "use", threading.Event()) == "another builder"
    assert not store.builder_running()

"""tool-rag's engine without MCP: servers.rag.service over the SQLite store and over a store kept in
memory (which shows the engine needs nothing from SQLite beyond the store interface)."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest

from servers.rag import indexing
from servers.rag.service import ContextResult, Passage, RagService, merge_adjacent
from servers.rag.sqlite_store import SqliteStore
from servers.rag.store import (
    BuilderStatus,
    DocumentEntry,
    IndexState,
    Publication,
    SourceMark,
    StoredChunk,
    StoredDocument,
    UpdateProgress,
)
from shared import budget
from shared.errors import Cancelled, InputError, TimedOut
from tests.rag_stand_ins import embed_in_process
from tests.test_rag import DOCS

LONG = {"title": "长文档", "url": "https://example.org/long",
        "page_body": "。".join(f"第{i}句话讲述一个不同的事实，内容各不相同" for i in range(200)) + "。"}


@pytest.fixture
def collection(root: Path) -> Path:
    path = root / "collection.json"
    path.write_text(json.dumps([*DOCS, LONG], ensure_ascii=False), encoding="utf-8")
    return path


class PlainLayout:
    def source(self, number: int, passage: Passage) -> str:
        return f"\n[{number}] {passage.citation}\n{passage.content}"

    def page(self, query: str, source_file: str, notes: list[str], sources: int, context: str) -> str:
        return "\n".join([f"{query} in {source_file}: {sources} sources", *notes, *([context] if context else [])])


def test_search_returns_cited_passages(collection, lexical_only):
    result = RagService().search(collection, "  直播电商 平台责任 ", top_k=3)
    assert result.query == "直播电商 平台责任" and result.source_file == "collection.json"
    first = result.results[0]
    assert (first.document_index, first.chunk_index, first.title) == (1, 0, "直播电商监管办法")
    assert first.citation == '[long_context: "直播电商监管办法", chunk 0]' and first.lexical_rank == 1
    assert result.index.documents == 7 and result.index.embedder == "none" and result.notes == []
    with pytest.raises(InputError, match="the query is empty"):
        RagService().search(collection, "   ")


def test_documents_are_read_from_the_index_not_the_collection_file(collection, lexical_only, monkeypatch):
    service = RagService()
    service.ready(collection)

    def no_streaming(_path: Path) -> Iterator[Any]:
        raise AssertionError("the collection file was streamed again")

    monkeypatch.setattr(indexing, "iter_records", no_streaming)
    whole = service.document(collection, 6)
    assert whole.text == LONG["page_body"] and whole.url == LONG["url"] and whole.next_start_index is None
    assert whole.total_chars == len(LONG["page_body"]) and whole.chunks == []
    page = service.document(collection, 6, start_index=10, max_chars=100)
    assert page.text == LONG["page_body"][10:110] and page.next_start_index == 110
    with pytest.raises(InputError, match="no document with index 7 \\(the collection has 7 documents"):
        service.document(collection, 7)


def test_neighbours_are_in_order_and_a_missing_chunk_is_an_error(collection, lexical_only):
    service = RagService()
    view = service.neighbours(collection, 6, 1, around=1)
    assert [p.chunk_index for p in view.chunks] == [0, 1, 2] and view.url == LONG["url"]
    assert view.text == "\n\n".join(p.content for p in view.chunks)
    last = service.stats(collection).chunks  # more chunks than the long document has
    with pytest.raises(InputError, match=f"no chunk {last} in document 6"):
        service.neighbours(collection, 6, last, around=5)


def test_adjacent_chunks_merge_and_are_cited_by_the_last():
    def passage(doc: int, chunk: int, score: float) -> Passage:
        return Passage(relevance_score=score, document_index=doc, chunk_index=chunk, title="t",
                       content=f"{doc}.{chunk}")

    merged = merge_adjacent([passage(0, 1, 0.5), passage(1, 0, 0.7), passage(0, 2, 0.9), passage(0, 4, 0.1)])
    assert [(p.document_index, p.chunk_index, p.content, p.relevance_score) for p in merged] == [
        (0, 2, "0.1\n0.2", 0.9), (1, 0, "1.0", 0.7), (0, 4, "0.4", 0.1)]
    assert merged[0].citation == '[long_context: "t", chunk 2]'


@pytest.mark.parametrize("max_tokens", [100, 150, 300, 700, 2000])
def test_context_text_stays_within_the_budget(collection, lexical_only, max_tokens):
    layout = PlainLayout()
    result = RagService().context(collection, "直播电商 数据库 位置编码 学术搜索 句话", layout, max_tokens=max_tokens,
                                  top_k=20, min_docs=5, max_per_doc=3)
    text = layout.page(result.query, result.source_file, result.notes, len(result.sources), result.context)
    assert result.tokens == budget.count_tokens(text) <= max_tokens
    if max_tokens >= 2000:
        assert len(result.sources) >= 2
    for block in re.split(r"\n\[\d+\] ", result.context)[1:]:
        assert block.split("\n", 1)[1].strip()  # no source is cut down to its citation alone


def test_context_counts_its_notes_in_the_budget(collection, lexical_only):
    notes = ["semantic indexing continues in the background (0% of 40 chunks); these results are lexical only",
             "semantic indexing failed (RemoteError: the embedder returned a zero or NaN vector; nothing was "
             "stored); results are lexical only"]
    service = RagService()
    original = service._open

    def with_notes(*args: Any) -> Any:
        found, ready = original(*args)
        return found, dataclasses.replace(ready, notes=notes)

    service._open = with_notes  # type: ignore[method-assign]
    layout = PlainLayout()
    result = service.context(collection, "直播电商 数据库 句话", layout, max_tokens=300)
    assert result.notes == notes and result.sources
    assert result.tokens <= 300


def test_a_cancelled_build_says_cancelled_and_the_next_call_resumes(root: Path, lexical_only, monkeypatch):
    path = root / "big.json"
    path.write_text(json.dumps([{"title": f"文档{i}", "page_body": f"第{i}篇文章讨论直播电商与平台责任。" * 5}
                                for i in range(450)], ensure_ascii=False), encoding="utf-8")
    service = RagService()
    cancel = threading.Event()
    reports: list[float] = []

    def progress(done: float, _total: float | None, _message: str | None) -> None:
        reports.append(done)
        cancel.set()  # as if the call were cancelled after its first batch

    with pytest.raises(Cancelled, match="cancelled; the next call resumes"):
        service.ready(path, progress=progress, cancel=cancel)
    store = service.collections.get(path).store
    assert reports == [indexing.BATCH_DOCS] and len(store.document_keys()) == indexing.BATCH_DOCS
    assert not store.state().lexical_complete and store.state().documents == 0  # nothing half-built is served
    made: list[str] = []
    original = indexing.entry
    monkeypatch.setattr(indexing, "entry", lambda key, *args: made.append(key) or original(key, *args))
    stats = service.stats(path)
    assert stats.lexical_complete and stats.documents == 450
    assert len(made) == 450 - indexing.BATCH_DOCS  # the first batch was not chunked and tokenized again


def test_waiting_for_another_builder_times_out_or_is_cancelled(tmp_path: Path):
    first, second = SqliteStore(tmp_path), SqliteStore(tmp_path)
    with first.build_lock(wait=1):
        with pytest.raises(TimedOut), second.build_lock(wait=0.3):
            pass
        cancel = threading.Event()
        cancel.set()
        with pytest.raises(Cancelled), second.build_lock(wait=60, cancel=cancel):
            pass


class TinyEmbedder:
    """Stands in for USE with another dimension (nothing may assume 512): one dimension per concept,
    in either language."""

    name = "tiny"
    CONCEPTS = (("直播", "live"), ("redis",), ("编码", "encoding"), ("decorator",), ("学术", "academic"))
    dim = len(CONCEPTS) + 1

    def _vector(self, text: str) -> Any:
        from servers.rag.numeric import numpy

        np = numpy()
        vector = np.array([any(word in text.lower() for word in words) for words in self.CONCEPTS] + [0.01],
                          dtype=np.float32)
        return vector / np.linalg.norm(vector)

    def embed(self, texts: list[str]) -> Any:
        from servers.rag.numeric import numpy

        return numpy().stack([self._vector(text) for text in texts])


def test_chunk_vectors_take_their_dimension_from_the_model(collection, monkeypatch):
    embed_in_process(monkeypatch, TinyEmbedder())
    service = RagService()
    service.ready(collection)
    service.collections.get(collection).wait_for_vectors(timeout=60)
    stats = service.stats(collection)
    assert stats.dense_complete and stats.dense_vectors == stats.chunks and stats.dense_error is None
    top = service.search(collection, "live", top_k=1).results[0]  # English on Chinese: the vectors count
    assert top.title == "直播电商监管办法" and top.dense_rank == 1


def test_a_failed_embedder_is_named_by_its_real_cause(collection, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "openai")
    monkeypatch.setenv("TOOLSUITE_EMBEDDING_BASE_URL", "http://127.0.0.1:9/v1")  # nothing listens there
    monkeypatch.setenv("TOOLSUITE_EMBEDDING_MODEL", "fake-embed")
    monkeypatch.setenv("TOOLSUITE_MODEL_RETRIES", "0")
    service = RagService()
    service.ready(collection)
    service.collections.get(collection).wait_for_vectors(timeout=60)
    ready = service.ready(collection)
    assert ready.stats.dense_error.startswith("RemoteError: cannot reach the embedding model")
    assert any(note.startswith("semantic indexing failed (RemoteError:") for note in ready.notes)
    assert service.search(collection, "Redis").results[0].title == "Redis配置与优化"  # lexical keeps serving


def test_the_thread_limit_for_numpy_is_set_when_the_engine_loads_numpy_not_on_import():
    code = ("import os, sys\n"
            "from servers.rag.server import build\n"
            "build()\n"
            "before = os.environ.get('OPENBLAS_NUM_THREADS')\n"
            "from servers.rag.numeric import numpy\n"
            "numpy()\n"
            "print(before, os.environ.get('OPENBLAS_NUM_THREADS'))")
    env = {k: v for k, v in os.environ.items() if k != "OPENBLAS_NUM_THREADS"}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, env=env,
                         cwd=Path(__file__).resolve().parent.parent)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["None", "1"]


# -- a second store behind the same engine --------------------------------------------------------


class MemoryStore:
    """The store interface over plain Python objects; lexical ranking by how many query terms match."""

    shared = False

    def __init__(self) -> None:
        self.entries: dict[str, DocumentEntry] = {}
        self.chunk_rows: list[tuple[str, int, str, set[str]]] = []  # (document key, chunk index, text, terms)
        self.order: list[str] = []
        self.mark: SourceMark | None = None
        self.meta: dict[str, Any] = {"build_seconds": None, "cjk_share": 0.0, "updated": 0}
        self.lock = threading.Lock()
        self.status = BuilderStatus()

    @contextlib.contextmanager
    def build_lock(self, wait: float, cancel: threading.Event | None = None) -> Iterator[None]:
        if not self.lock.acquire(timeout=wait):
            raise TimedOut("busy")
        try:
            yield
        finally:
            self.lock.release()

    vector_lock = build_lock

    def builder_running(self) -> bool:
        return False

    def updating(self) -> bool:
        return self.lock.locked()

    def _position(self, key: str) -> int | None:
        return self.order.index(key) if key in self.order else None

    def state(self) -> IndexState:
        chunks = sum(len(self.entries[key].chunks) for key in self.order)
        return IndexState(documents=len(self.order), chunks=chunks, lexical_complete=self.mark is not None,
                          pending_documents=0, dense_vectors=0, dense_complete=False,
                          cjk_share=self.meta["cjk_share"],
                          build_seconds=self.meta["build_seconds"], updated_documents=self.meta["updated"])

    def source(self) -> SourceMark | None:
        return self.mark

    def document_keys(self) -> set[str]:
        return set(self.entries)

    def add_documents(self, batch: Sequence[DocumentEntry], progress: UpdateProgress,
                      placed: Sequence[tuple[int, str]] = ()) -> None:
        for document in batch:
            self.entries[document.key] = document
            for chunk in document.chunks:
                self.chunk_rows.append((document.key, chunk.chunk_index, chunk.text, set(chunk.terms)))

    def note_progress(self, progress: UpdateProgress) -> None:
        pass

    def documents_not_in(self, keys: Sequence[str]) -> list[StoredDocument]:
        return [StoredDocument(-1, e.title, e.url, e.body, e.key) for e in self.entries.values() if e.key not in keys]

    def publish(self, publication: Publication) -> None:
        for document in publication.removed:
            self.entries.pop(document.key, None)
        self.order = list(publication.order)
        self.mark = publication.source
        self.meta.update(build_seconds=publication.seconds, updated=publication.new_documents)

    def texts_to_embed(self, limit: int) -> list[tuple[int, str, str]]:
        return []

    def add_vectors(self, rows: Sequence[int], vectors: Any) -> None:
        raise AssertionError("no vectors without an embedder")

    def builder_status(self) -> BuilderStatus:
        return self.status

    def set_builder_status(self, status: BuilderStatus) -> None:
        self.status = status

    def _stored(self, chunk_id: int) -> StoredChunk | None:
        key, chunk_index, text, _terms = self.chunk_rows[chunk_id]
        position = self._position(key)
        if position is None:
            return None
        return StoredChunk(chunk_id, position, chunk_index, self.entries[key].title, text)

    def document(self, doc_index: int) -> StoredDocument | None:
        if not 0 <= doc_index < len(self.order):
            return None
        found = self.entries[self.order[doc_index]]
        return StoredDocument(doc_index, found.title, found.url, found.body, found.key)

    def chunks(self, chunk_ids: Sequence[int]) -> list[StoredChunk]:
        found = [self._stored(i) for i in chunk_ids if 0 <= i < len(self.chunk_rows)]
        return [chunk for chunk in found if chunk is not None]

    def chunks_of(self, doc_index: int, first: int, last: int) -> list[StoredChunk]:
        found = self.chunks(range(len(self.chunk_rows)))
        return [c for c in found if c.doc_index == doc_index and first <= c.chunk_index <= last]

    def documents_of(self, chunk_ids: Sequence[int]) -> dict[int, int]:
        return {c.chunk_id: c.doc_index for c in self.chunks(chunk_ids)}

    def term_counts(self, terms: Sequence[str]) -> dict[str, int]:
        counts = {term: sum(term in row[3] for row in self.chunk_rows) for term in terms}
        return {term: count for term, count in counts.items() if count}

    def lexical_ranking(self, terms: Sequence[str], limit: int) -> list[int]:
        scored = [(len(set(terms) & row[3]), -i) for i, row in enumerate(self.chunk_rows)]
        return [-i for score, i in sorted(scored, reverse=True) if score][:limit]

    def nearest(self, vector: Any, limit: int) -> list[int]:
        return []

    def best_chunks(self, documents: Sequence[int], vector: Any | None) -> dict[int, int]:
        found = self.chunks(range(len(self.chunk_rows)))
        return {c.doc_index: c.chunk_id for c in reversed(found) if c.doc_index in documents}


class MemoryBackend:
    version = "memory-2"

    def __init__(self) -> None:
        self.stores: dict[str, MemoryStore] = {}

    def open(self, key: str) -> MemoryStore:
        return self.stores.setdefault(key, MemoryStore())

    def peek(self, key: str) -> MemoryStore | None:
        return self.stores.get(key)


def test_the_engine_runs_on_another_store(collection, lexical_only):
    backend = MemoryBackend()
    service = RagService(backend)
    found = service.search(collection, "Redis 持久化", top_k=2, diverse=False)
    assert [p.document_index for p in found.results] == [0, 0] and found.results[0].relevance_score == 1.0
    context = service.context(collection, "decorator", PlainLayout(), max_tokens=500)
    assert isinstance(context, ContextResult) and context.sources[0].title == "Python decorators"
    assert service.document(collection, 3).text == DOCS[3]["content"]
    assert [p.chunk_index for p in service.neighbours(collection, 6, 0).chunks] == [0, 1]
    assert service.stats(collection).lexical_complete and len(backend.stores) == 1
    assert not list((collection.parent.parent / "cache").glob("rag/*"))  # nothing went to SQLite


def test_the_engine_modules_know_nothing_of_mcp():
    import ast

    folder = Path(__file__).resolve().parent.parent / "servers" / "rag"
    for module in sorted(folder.glob("*.py")):
        if module.name == "server.py":
            continue
        imported = set()
        for node in ast.walk(ast.parse(module.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module:
                imported.add(node.module)
        assert not {name for name in imported if name.split(".")[0] in ("mcp", "mcp_types", "pydantic")}, module.name
        assert not {name for name in imported if name in ("servers.rag.server", "shared.server")}, module.name

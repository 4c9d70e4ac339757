"""rag_list_collections through the MCP in-memory client: which files are collections, their counts
and index states, the bounds of the walk, and the path policy."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
from mcp import Client

from servers.rag import discovery
from servers.rag.server import build
from tests.test_rag import DOCS

pytestmark = pytest.mark.anyio


@pytest.fixture
def tree(root: Path, tmp_path: Path) -> Path:
    (root / "collection.json").write_text(json.dumps(DOCS, ensure_ascii=False), encoding="utf-8")
    (root / "wrapped.json").write_text(json.dumps({"documents": DOCS[:2]}, ensure_ascii=False), encoding="utf-8")
    (root / "deep" / "er").mkdir(parents=True)
    (root / "deep" / "er" / "lines.jsonl").write_text(
        "".join(json.dumps(d, ensure_ascii=False) + "\n" for d in DOCS[:3]) + "\n", encoding="utf-8")
    (root / "settings.json").write_text('{"theme": "dark", "size": 3}')  # JSON, but not a collection
    (root / "numbers.json").write_text("[1, 2, 3]")
    (root / "empty.json").write_text("")
    (root / "notes.txt").write_text('[{"title": "not json by name"}]')
    for hidden in (".git", "node_modules"):
        (root / hidden).mkdir()
        (root / hidden / "c.json").write_text(json.dumps(DOCS[:1]))
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret.json").write_text(json.dumps(DOCS[:1]))
    os.symlink(outside / "secret.json", root / "linked-out.json")  # a link out of the roots: never listed
    os.symlink(outside, root / "linked-folder")  # links to folders are never followed
    os.symlink(root / "wrapped.json", root / "deep" / "same.json")  # a link inside the roots: listed once
    return root


async def list_collections(arguments: dict | None = None):
    async with Client(build()) as client:
        return await client.call_tool("rag_list_collections", arguments or {})


async def test_collections_are_found_with_counts_and_index_states(tree: Path, lexical_only, tmp_path: Path):
    result = await list_collections()
    assert not result.is_error, result.content[-1].text
    entries = {e["json_path"]: e for e in result.structured_content["collections"]}
    assert set(entries) == {"collection.json", "wrapped.json", "deep/er/lines.jsonl"}
    assert [entries[p]["documents"] for p in ("collection.json", "wrapped.json", "deep/er/lines.jsonl")] == [6, 2, 3]
    assert {e["format"] for e in entries.values()} == {"JSON array", "JSON object with a documents array",
                                                       "JSON Lines"}
    assert all(e["index"] == "not indexed" and not e["lexical_ready"] for e in entries.values())
    assert not (tmp_path / "cache" / "rag").exists() or not list((tmp_path / "cache" / "rag").iterdir())
    text = result.content[-1].text
    assert text.startswith("=== RAG Collections ===\nFolder: ") and "Collections Found: 3" in text
    assert "Collection 1\nJSON Path: collection.json" in text

    async with Client(build()) as client:
        await client.call_tool("rag_search", {"query": "Redis", "json_path": "collection.json"})
        indexed = await client.call_tool("rag_list_collections", {})
        (tree / "collection.json").write_text(json.dumps(DOCS[:4], ensure_ascii=False), encoding="utf-8")
        changed = await client.call_tool("rag_list_collections", {})
    first = {e["json_path"]: e for e in indexed.structured_content["collections"]}["collection.json"]
    assert first["index"] == "complete" and first["lexical_ready"] and first["up_to_date"]
    assert first["documents"] == 6 and first["semantic_percent"] is None
    later = {e["json_path"]: e for e in changed.structured_content["collections"]}["collection.json"]
    assert later["index"].startswith("complete; out of date") and not later["up_to_date"]
    assert later["documents"] == 4  # counted in the file, not taken from the stale index


async def test_semantic_progress_is_a_percentage(tree: Path, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "use")
    monkeypatch.setenv("TOOLSUITE_RAG_BUILDER", "thread")
    from servers.rag.service import RagService

    service = RagService()
    service.ready(tree / "collection.json")
    service.collections.get(tree / "collection.json").wait_for_vectors(timeout=60)
    listing = service.collections_under()
    entry = next(e for e in listing.collections if e.json_path == "collection.json")
    assert entry.semantic_percent == 100.0 and entry.index == "complete"


async def test_a_folder_narrows_the_search_and_the_path_policy_holds(tree: Path, lexical_only):
    deep = await list_collections({"folder": "deep"})
    assert [e["json_path"] for e in deep.structured_content["collections"]] == ["deep/same.json", "deep/er/lines.jsonl"]
    assert deep.structured_content["folder"] == "deep"
    for folder, expected in (("../", "outside the allowed roots"), ("missing", "not found"),
                             ("collection.json", "is a file, not a folder"),
                             ("linked-folder", "outside the allowed roots")):
        result = await list_collections({"folder": folder})
        assert result.is_error and expected in result.content[-1].text, (folder, result.content[-1].text)


async def test_the_walk_is_bounded_and_says_so(tree: Path, lexical_only, monkeypatch):
    monkeypatch.setattr(discovery, "MAX_ENTRIES", 5)
    result = await list_collections()
    assert "the search stopped after 5 entries" in result.content[-1].text
    assert result.structured_content["entries_scanned"] == 5
    monkeypatch.setattr(discovery, "MAX_ENTRIES", 20_000)
    monkeypatch.setattr(discovery, "MAX_DEPTH", 1)
    shallow = await list_collections()
    assert "deep/er/lines.jsonl" not in {e["json_path"] for e in shallow.structured_content["collections"]}


async def test_the_tool_is_described_as_read_only_with_an_output_schema(lexical_only):
    async with Client(build()) as client:
        tools = {tool.name: tool for tool in (await client.list_tools()).tools}
    tool = tools["rag_list_collections"]
    assert tool.annotations.read_only_hint and not tool.annotations.destructive_hint
    assert set(tool.output_schema["properties"]) == {"folder", "collections", "entries_scanned", "notes"}
    assert tool.input_schema["properties"]["folder"]["description"]

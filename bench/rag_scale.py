"""tool-rag at full scale: a 12,203-document collection of about 30 million characters, built by
recombining the paragraphs of the real records in ../shared/data/corpora (titles reused with a
number, bodies drawn from real paragraphs; so the text is real but the documents are synthetic).

Reports, through the MCP in-memory client: time to a searchable index (the first rag_search call,
which builds the lexical index; English questions are then answered by BM25 with dictionary
translation), time until the USE chunk vectors are complete in the detached builder (the chosen
cross-lingual quality), index size on disk, peak RSS of the server process and of the builder, and
warm rag_search latency p50/p95 over the 186 questions of bench/rag_questions.jsonl and 14 short
Chinese snippets (200 queries, a third English), overall and per language. Targets on this machine:
searchable in under 2 minutes; warm p50 under 50 ms and p95 under 150 ms; peak RSS under 2 GB.

Then the incremental update: the same collection as JSON Lines, indexed, 100 new records appended
(while its vectors are being built in the background), and the time until a search finds them
(target under 10 s), with what the update re-indexed and whether the vector build kept its rows.
`--incremental` runs only that part (a few minutes instead of twenty).
Run: `.venv/bin/python bench/rag_scale.py [documents] [--incremental]`; the real records are read
from ../shared/data/corpora, or from BENCH_DATA.
"""

from __future__ import annotations

import glob
import json
import os
import random
import re
import resource
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import common  # noqa: E402  (bench/ is on the path from here)

DATA = Path(os.environ.get("BENCH_DATA") or REPO.parent / "shared" / "data" / "corpora")
# BENCH_RAG_WORK reuses a folder of an earlier run (collection and index kept), to time searches again
# without rebuilding for 18 minutes.
REUSE = os.environ.get("BENCH_RAG_WORK")
WORK = Path(REUSE) if REUSE else Path(tempfile.mkdtemp(prefix="bench-rag-scale-"))
os.environ["TOOLSUITE_ROOTS"] = str(WORK)
os.environ["TOOLSUITE_CACHE_DIR"] = str(WORK / "cache")


def real_text() -> tuple[list[str], list[str]]:
    """Titles and paragraphs of the real records."""
    titles: list[str] = []
    paragraphs: list[str] = []
    for name in sorted(glob.glob(str(DATA / "*" / "long_context_sampled_*.json"))):
        with open(name, encoding="utf-8") as handle:
            for record in json.load(handle):
                titles.append(record.get("title") or "")
                for part in re.split(r"\n+|(?<=[。！？])", record.get("page_body") or ""):
                    if len(part.strip()) >= 20:
                        paragraphs.append(part.strip())
    return titles, paragraphs


def make_collection(path: Path, documents: int, target_chars: int, write: bool = True) -> tuple[int, list[str]]:
    rng = random.Random(11)
    titles, paragraphs = real_text()
    per_doc = target_chars // documents
    total = 0
    with open(path if write else os.devnull, "w", encoding="utf-8") as out:
        out.write("[")
        for number in range(documents):
            body: list[str] = []
            size = 0
            wanted = int(per_doc * rng.uniform(0.3, 1.7))
            while size < wanted:
                piece = rng.choice(paragraphs)
                body.append(piece)
                size += len(piece)
            text = "\n".join(body)
            total += len(text)
            record = {"title": f"{rng.choice(titles)} ({number})", "page_body": text}
            out.write(("," if number else "") + json.dumps(record, ensure_ascii=False))
        out.write("]")
    questions = [json.loads(line)["query"] for line in
                 (REPO / "bench" / "rag_questions.jsonl").read_text(encoding="utf-8").splitlines() if line.strip()]
    queries = questions + [p[: rng.randint(6, 16)] for p in rng.sample(paragraphs, 200 - len(questions))]
    return total, queries


APPENDED = 100


def appended_records(count: int) -> list[dict[str, str]]:
    """New records of real text, each with a marker word no other record has."""
    rng = random.Random(23)
    titles, paragraphs = real_text()
    return [{"title": f"{rng.choice(titles)} (appended {number})",
             "page_body": f"zqmark{number:04d} " + "\n".join(rng.choice(paragraphs) for _ in range(12))}
            for number in range(count)]


def vector_rows(path: Path) -> int:
    """Chunks with a vector in the collection's index, read from the store."""
    from servers.rag.service import RagService

    return RagService().collections.get(path.resolve()).state().dense_vectors


async def incremental(documents: int) -> None:
    from mcp import Client

    from servers.rag.server import build

    array = WORK / "collection.json"
    lines = WORK / "collection.jsonl"
    if not lines.exists():
        with open(array, encoding="utf-8") as source, open(lines, "w", encoding="utf-8") as out:
            for record in json.load(source):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
    async with Client(build()) as client:
        started = time.perf_counter()
        first = await client.call_tool("rag_search", {"query": "直播电商 平台责任", "json_path": lines.name})
        assert not first.is_error, first.content[-1].text
        print(f"JSON Lines copy: searchable (lexical) after {time.perf_counter() - started:.1f} s")
        await anyio_sleep(20)  # let the background vector build get under way, as in real use
        before = vector_rows(lines)
        with open(lines, "a", encoding="utf-8") as out:
            for record in appended_records(APPENDED):
                out.write(json.dumps(record, ensure_ascii=False) + "\n")
        started = time.perf_counter()
        found = await client.call_tool("rag_search", {"query": "zqmark0042", "json_path": lines.name, "top_k": 1})
        searchable = time.perf_counter() - started
        hit = found.structured_content["results"][0]["document_index"] if found.structured_content["results"] else None
        stats = (await client.call_tool("rag_document_stats", {"json_path": lines.name})).structured_content
        print(f"{APPENDED} records appended to {documents:,}: searchable after {searchable:.1f} s (target < 10 s); "
              f"the marked record found at Document Index {hit} (expected {documents + 42}); the update read "
              f"{stats['documents']:,} records and indexed {stats['updated_documents']} in {stats['build_seconds']} s")
        await anyio_sleep(5)
        after = vector_rows(lines)
        print(f"vector build across the append: chunk vectors {before:,} -> {after:,} (kept, not restarted); "
              f"builder: {stats['vector_builder']}")


def builder_rss_mb() -> float:
    """Peak RSS of the running detached vector builders of this run (0 when none runs)."""
    peak = 0.0
    for proc in Path("/proc").iterdir():
        try:
            if not proc.name.isdigit() or b"servers.rag.builder" not in (proc / "cmdline").read_bytes():
                continue
            if str(WORK).encode() not in (proc / "cmdline").read_bytes():
                continue
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    peak = max(peak, int(line.split()[1]) / 1024)
        except OSError:
            continue
    return peak


async def anyio_sleep(seconds: float) -> None:
    import anyio

    await anyio.sleep(seconds)


async def run(documents: int, only_incremental: bool) -> None:
    from mcp import Client

    from servers.rag.server import build
    from shared import cjk

    path = WORK / "collection.json"
    started = time.perf_counter()
    chars, queries = make_collection(path, documents, 30_000_000 * documents // 12_203, write=not path.exists())
    print(f"collection: {documents:,} documents, {chars:,} characters, {path.stat().st_size / 2**20:.0f} MB "
          f"(made in {time.perf_counter() - started:.0f} s from real paragraphs)")
    if only_incremental:
        await incremental(documents)
        return
    async with Client(build()) as client:
        started = time.perf_counter()
        first = await client.call_tool("rag_search", {"query": "直播电商 平台责任", "json_path": path.name})
        searchable = time.perf_counter() - started
        assert not first.is_error, first.content[0].text
        stats = (await client.call_tool("rag_document_stats", {"json_path": path.name})).structured_content
        print(f"searchable (lexical) after {searchable:.1f} s: {stats['documents']:,} documents, "
              f"{stats['chunks']:,} chunks (target < 120 s)")
        builder_peak = 0
        while True:
            stats = (await client.call_tool("rag_document_stats", {"json_path": path.name})).structured_content
            builder_peak = max(builder_peak, builder_rss_mb())
            now = time.perf_counter() - started
            if stats["dense_complete"]:
                print(f"chunk vectors (USE) complete after {now:.0f} s ({now / 60:.1f} min; in a detached builder "
                      f"process, {stats['chunks'] / max(now - searchable, 1):.0f} chunks/s)")
                break
            if stats.get("dense_error"):
                print(f"background indexing failed: {stats['dense_error']}")
                break
            await anyio_sleep(5)
        size = common.folder_size(WORK / "cache")
        print(f"index size on disk: {size / 2**20:.0f} MB")
        for query in queries[:3] + queries[-3:]:  # warm: the dictionary and the encoder loaded
            await client.call_tool("rag_search", {"query": query, "json_path": path.name, "top_k": 10})
        latencies: dict[str, list[float]] = {"all": [], "en": [], "zh": []}
        for query in queries:
            begun = time.perf_counter()
            result = await client.call_tool("rag_search", {"query": query, "json_path": path.name, "top_k": 10})
            took = time.perf_counter() - begun
            assert not result.is_error
            latencies["all"].append(took)
            latencies["zh" if cjk.has_han(query) else "en"].append(took)
        for label, values in latencies.items():
            values.sort()
            p95 = values[max(0, int(len(values) * 0.95) - 1)]
            print(f"warm rag_search, {label} ({len(values)} queries): p50 {statistics.median(values) * 1000:.0f} ms, "
                  f"p95 {p95 * 1000:.0f} ms (targets 50 / 150 ms)")
    print(f"peak RSS: server process {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:.0f} MB, vector "
          f"builder {builder_peak:.0f} MB (target < 2048 MB)")
    await incremental(documents)


def main() -> None:
    import anyio

    if not DATA.exists():
        print(f"skipped: {DATA} is missing (it is not part of a user's clone)")
        return
    arguments = [a for a in sys.argv[1:] if not a.startswith("--")]
    documents = int(arguments[0]) if arguments else 12_203
    try:
        anyio.run(run, documents, "--incremental" in sys.argv)
    finally:
        if not REUSE:
            shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()

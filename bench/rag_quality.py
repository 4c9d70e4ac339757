"""tool-rag retrieval quality: a known-item evaluation on the real records of ../shared/data/corpora.

The collection is every distinct record of the corpora with at least 300 characters of body
(364 documents, mostly Chinese). The 50 questions below were written by hand for this benchmark,
paraphrasing one document each in other words: 30 in Chinese and 20 in English about the same
Chinese articles (the cross-lingual case agents really produce). Reported: Recall@1/@5/@10 and MRR
of the gold document for lexical only, the dense embedder only, the hybrid default, and a faithful
re-implementation of the reference algorithm (1,500/200-character chunks with a title-only first
chunk, cosine top-k on the same embedder, its diverse selection). Also: the share of chunks
without new text and of documents with a title-only chunk, ours against the reference chunker.
Run: `.venv/bin/python bench/rag_quality.py`.
"""

from __future__ import annotations

import glob
import hashlib
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from common import QUESTIONS_EN, QUESTIONS_ZH  # noqa: E402

DATA = REPO.parent / "shared" / "data" / "corpora"
WORK = Path(tempfile.mkdtemp(prefix="bench-rag-quality-"))
os.environ["TOOLSUITE_ROOTS"] = str(WORK)
os.environ["TOOLSUITE_CACHE_DIR"] = str(WORK / "cache")

def collection() -> list[dict]:
    seen: set[str] = set()
    records = []
    for path in sorted(glob.glob(str(DATA / "*" / "long_context_sampled_*.json"))):
        with open(path, encoding="utf-8") as handle:
            loaded = json.load(handle)
        for record in loaded:
            body = record.get("page_body") or ""
            key = hashlib.md5((record.get("title", "") + body[:200]).encode()).hexdigest()
            if key in seen or len(body) < 300:
                continue
            seen.add(key)
            records.append({"title": record.get("title", ""), "page_body": body})
    return records


def reference_chunks(title: str, body: str) -> list[str]:
    """The reference chunker as read from its behaviour: a title chunk, then 1,500-character windows
    that overlap by 200 characters."""
    chunks = [title] if title else []
    start = 0
    while start < len(body):
        chunks.append(body[start:start + 1500])
        if start + 1500 >= len(body):
            break
        start += 1300
    return chunks


def chunk_quality(records: list[dict]) -> None:
    from servers.rag.chunker import chunk_document

    def stats(chunked: list[list[str]], title_only: list[bool]) -> tuple[int, float, float]:
        total = sum(len(c) for c in chunked)
        stale = 0
        for chunks in chunked:
            for previous, current in itertools.pairwise(chunks):
                if current in previous or previous.endswith(current):
                    stale += 1
        return total, stale / max(total, 1), sum(title_only) / max(len(title_only), 1)

    ours = [[c.text for c in chunk_document(i, r["page_body"])] for i, r in enumerate(records)]
    ours_title = [any(c.strip() == r["title"].strip() for c in chunks) for chunks, r in zip(ours, records,
                                                                                            strict=True)]
    theirs = [reference_chunks(r["title"], r["page_body"]) for r in records]
    theirs_title = [bool(r["title"]) for r in records]
    for name, chunked, title_only in (("ours", ours, ours_title), ("reference", theirs, theirs_title)):
        total, stale, titles = stats(chunked, title_only)
        print(f"{name:10s} chunks {total:6d}; chunks with no new text {stale:6.1%}; "
              f"documents with a title-only chunk {titles:6.1%}")


def metrics(rankings: list[list[int]], gold: list[int]) -> dict[str, float]:
    found = [r.index(g) + 1 if g in r else None for r, g in zip(rankings, gold, strict=True)]
    n = len(gold)
    return {"R@1": sum(1 for f in found if f and f <= 1) / n, "R@5": sum(1 for f in found if f and f <= 5) / n,
            "R@10": sum(1 for f in found if f and f <= 10) / n,
            "MRR": sum(1 / f for f in found if f) / n}


def documents_in_order(doc_ids: list[int], limit: int = 10) -> list[int]:
    out: list[int] = []
    for doc in doc_ids:
        if doc not in out:
            out.append(doc)
        if len(out) == limit:
            break
    return out


def main() -> None:
    from servers.rag import embedders, search
    from servers.rag.numeric import numpy
    from servers.rag.service import RagService

    np = numpy()

    if not DATA.exists():
        print(f"skipped: {DATA} is missing (it is not part of a user's clone)")
        return
    records = collection()
    path = WORK / "eval.json"
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    titles = [r["title"] for r in records]
    questions = [(q, key, "zh") for q, key in QUESTIONS_ZH] + [(q, key, "en") for q, key in QUESTIONS_EN]
    gold = []
    for _question, key, _lang in questions:
        matches = [i for i, t in enumerate(titles) if key in t]
        assert len(matches) == 1, (key, matches)
        gold.append(matches[0])
    print(f"collection: {len(records)} documents, {sum(len(r['page_body']) for r in records):,} characters; "
          f"{len(QUESTIONS_ZH)} Chinese and {len(QUESTIONS_EN)} English questions\n")
    print("== chunks ==")
    chunk_quality(records)

    os.environ["TOOLSUITE_RAG_EMBEDDER"] = "wordllama"
    service = RagService()
    started = time.perf_counter()
    service.ready(path)
    index = service.collections.get(path)
    index.wait_for_vectors()
    state = index.state()
    print(f"\nindex built in {time.perf_counter() - started:.1f} s ({state.chunks} chunks, "
          f"{state.document_vectors} document leads)")

    def chunk_docs(ids: list[int]) -> list[int]:
        rows = index.store.documents_of(ids)
        return [rows[i] for i in ids if i in rows]

    methods: dict[str, list[list[int]]] = {"lexical (jieba BM25)": [], "dense (wordllama)": [],
                                           "documents (e5 leads)": [], "hybrid (default)": [],
                                           "reference algorithm (wordllama)": []}
    model = embedders.get("wordllama")
    ref_texts, ref_docs = [], []
    for doc, record in enumerate(records):
        for chunk in reference_chunks(record["title"], record["page_body"]):
            ref_texts.append(chunk)
            ref_docs.append(doc)
    ref_vectors = model.embed(ref_texts)
    for question, _key, _lang in questions:
        methods["lexical (jieba BM25)"].append(documents_in_order(chunk_docs(search.lexical_ranking(index, question))))
        vector = search.chunk_query_vector(index, question)
        methods["dense (wordllama)"].append(documents_in_order(chunk_docs(search.dense_ranking(index, vector))))
        methods["documents (e5 leads)"].append(documents_in_order(search.document_ranking(index, question)))
        hits = search.search(index, question, top_k=10, diverse=True, min_docs=5, max_per_doc=2)
        methods["hybrid (default)"].append(documents_in_order([h.document_index for h in hits]))
        scores = ref_vectors @ model.embed([question])[0]
        order = np.argsort(-scores)[:50]
        picked: list[int] = []
        per_doc: dict[int, int] = {}
        for i in order:  # the reference's diverse search: best per document first, at most 2 each
            doc = ref_docs[int(i)]
            if per_doc.get(doc, 0) < 2:
                picked.append(doc)
                per_doc[doc] = per_doc.get(doc, 0) + 1
            if len(picked) >= 10:
                break
        methods["reference algorithm (wordllama)"].append(documents_in_order(picked))

    print("\n== known-item retrieval (gold document in the top k) ==")
    print(f"{'method':34s} {'set':4s} {'R@1':>5s} {'R@5':>5s} {'R@10':>5s} {'MRR':>5s}")
    zh = [i for i, q in enumerate(questions) if q[2] == "zh"]
    en = [i for i, q in enumerate(questions) if q[2] == "en"]
    for name, rankings in methods.items():
        for label, subset in (("all", list(range(len(questions)))), ("zh", zh), ("en", en)):
            m = metrics([rankings[i] for i in subset], [gold[i] for i in subset])
            print(f"{name:34s} {label:4s} {m['R@1']:5.2f} {m['R@5']:5.2f} {m['R@10']:5.2f} {m['MRR']:5.2f}")
    misses = [questions[i][0] for i in range(len(questions)) if gold[i] not in methods["hybrid (default)"][i]]
    if misses:
        print("\nhybrid misses (gold not in the top 10):")
        for question in misses:
            print(f"  - {question}")
    shutil.rmtree(WORK, ignore_errors=True)


if __name__ == "__main__":
    main()

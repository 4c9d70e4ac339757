"""tool-rag's client for OpenAI-compatible embeddings endpoints, against a fake endpoint that answers
at once, so the figure is the client's own ceiling (issue: a GPU server such as Text Embeddings
Inference or vLLM must be the limit, not us; target >= 2,000 chunks/s).

The fake endpoint runs in a process of its own on 127.0.0.1 (HTTP/1.1 keep-alive, a thread per
connection) and answers every request with ready-made vectors of the requested count and encoding
(JSON floats, or base64 when asked), so it costs almost nothing per request. The chunks are real:
~450-token chunks cut by the suite's chunker from the real records of ../shared/data/corpora
(recombined to the requested count), or synthetic Chinese text when those are missing.

Reported: chunks/s through the embedder `embedders.get("openai")` returns, called with as many texts
at a time as the vector build hands it, for the configured batch size and concurrency, and through
`indexing.build_vectors` into a real index (reading the texts from SQLite and writing the vectors).
Run: `.venv/bin/python bench/rag_embed_client.py [--chunks N] [--dim D] [--format float|base64]`.
"""

from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
from http.server import ThreadingHTTPServer
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
DATA = Path(os.environ.get("BENCH_DATA") or REPO.parent / "shared" / "data" / "corpora")


def serve(port_file: str, dim: int, ignore_format: bool) -> None:
    """The fake endpoint: answers /v1/embeddings with ready-made vectors, cached per (count, format)."""
    import numpy as np

    from tests.local_http import QuietHandler, send

    vector = np.linspace(0.1, 1.0, dim, dtype=np.float32)
    floats = json.dumps([round(float(v), 6) for v in vector])
    packed = base64.b64encode(vector.tobytes()).decode()
    answers: dict[tuple[int, str], bytes] = {}

    def answer(count: int, encoding: str) -> bytes:
        key = (count, encoding)
        if key not in answers:
            value = f'"{packed}"' if encoding == "base64" else floats
            items = ",".join(f'{{"object":"embedding","index":{i},"embedding":{value}}}' for i in range(count))
            answers[key] = (f'{{"object":"list","model":"fake","data":[{items}],'
                            f'"usage":{{"prompt_tokens":{count},"total_tokens":{count}}}}}').encode()
        return answers[key]

    class Handler(QuietHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            request = json.loads(self.rfile.read(int(self.headers["content-length"])))
            encoding = "float" if ignore_format else request.get("encoding_format", "float")
            send(self, 200, answer(len(request["input"]), encoding), "application/json")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    Path(port_file).write_text(str(server.server_address[1]))
    server.serve_forever()


def real_chunks(count: int) -> list[str]:
    from servers.rag.chunker import chunk_document

    bodies = []
    for name in sorted(glob.glob(str(DATA / "*" / "long_context_sampled_*.json"))):
        with open(name, encoding="utf-8") as handle:
            bodies += [(r.get("title") or "", r.get("page_body") or "") for r in json.load(handle)]
    texts = [f"{title}\n{chunk.text}" for title, body in bodies for chunk in chunk_document(0, body)]
    if not texts:
        texts = ["第一句话讲述一个事实，内容各不相同。" * 25]
    rng = random.Random(5)
    return [rng.choice(texts) for _ in range(count)]


def start_fake(dim: int, ignore_format: bool) -> tuple[subprocess.Popen[bytes], str]:
    port_file = tempfile.mktemp(prefix="fake-embed-port-")
    process = subprocess.Popen([sys.executable, __file__, "--serve", port_file, "--dim", str(dim)] +
                               (["--format", "float"] if ignore_format else []))
    for _ in range(200):
        if os.path.exists(port_file) and Path(port_file).read_text():
            break
        time.sleep(0.05)
    port = Path(port_file).read_text()
    os.unlink(port_file)
    return process, f"http://127.0.0.1:{port}/v1"


def through_client(texts: list[str]) -> float:
    from servers.rag import embedders

    model = embedders.get("openai")
    model.embed(texts[:64])  # connections opened, as in a running build
    step = getattr(model, "rows_per_call", 512)  # as the vector build hands texts over
    started = time.perf_counter()
    for start in range(0, len(texts), step):
        model.embed(texts[start:start + step])
    return len(texts) / (time.perf_counter() - started)


def through_store(texts: list[str], work: Path) -> float:
    from servers.rag import embedders, indexing
    from servers.rag.sqlite_store import SqliteBackend
    from servers.rag.store import ChunkEntry, DocumentEntry, Publication, SourceMark, UpdateProgress

    store = SqliteBackend().open("bench-embed")
    documents = [DocumentEntry(f"k{i}", "", None, text, [ChunkEntry(0, text, ["x"])], 0, 1)
                 for i, text in enumerate(texts)]
    for start in range(0, len(documents), 2000):
        store.add_documents(documents[start:start + 2000], UpdateProgress(start, start))
    (work / "c.json").write_text("[]")
    store.publish(Publication([d.key for d in documents], SourceMark.of(work / "c.json"), [], 0, 0.0))
    model = embedders.get("openai")
    started = time.perf_counter()
    indexing.build_vectors(store, "chunks", lambda: model)
    return len(texts) / (time.perf_counter() - started)


def has_orjson() -> bool:
    import importlib.util

    return importlib.util.find_spec("orjson") is not None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--chunks", type=int, default=20_000)
    parser.add_argument("--dim", type=int, default=1024)
    parser.add_argument("--format", choices=["auto", "float"], default="auto",
                        help="float: the endpoint ignores encoding_format and always answers JSON floats")
    parser.add_argument("--client-only", action="store_true", help="skip the vector build into a store")
    parser.add_argument("--serve", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve, args.dim, args.format == "float")
        return
    work = Path(tempfile.mkdtemp(prefix="bench-embed-"))
    process, base_url = start_fake(args.dim, args.format == "float")
    os.environ.update(TOOLSUITE_EMBEDDING_BASE_URL=base_url, TOOLSUITE_EMBEDDING_MODEL="fake",
                      TOOLSUITE_CACHE_DIR=str(work / "cache"), TOOLSUITE_ROOTS=str(work))
    try:
        texts = real_chunks(args.chunks)

        from servers.rag import embedders

        model = embedders.get("openai")
        print(f"{len(texts):,} real chunks (~{sum(map(len, texts)) // len(texts)} characters each), {args.dim}-d "
              f"vectors, endpoint answers {'JSON floats only' if args.format == 'float' else 'as asked'}; "
              f"batch {model.batch}, concurrency {model.concurrency}, orjson {'yes' if has_orjson() else 'no'}")
        model = None
        print(f"client alone:              {through_client(texts):7,.0f} chunks/s (target >= 2,000)")
        if not args.client_only:
            print(f"vector build into a store: {through_store(texts, work):7,.0f} chunks/s")
    finally:
        process.terminate()
        process.wait()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()

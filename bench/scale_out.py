"""tool-rag past one process: stateless replicas behind HAProxy, sharing one PostgreSQL + pgvector index.

What it does, on this machine and on loopback only:
1. Makes a collection of DOCUMENTS (default 2,000) documents: first the 383 distinct real records
   of ../shared/data/corpora (or BENCH_DATA; all four sample sizes of the three tasks, deduplicated
   as bench/rag_quality.py does), the articles bench/rag_questions.jsonl asks about; then, since
   only those exist here, documents made from their real paragraphs as bench/rag_scale.py makes
   its collection (a real title with a number, a body of FILLER_CHARS real paragraphs drawn at
   random: real text, synthetic documents). The calls ask the 186 questions of
   bench/rag_questions.jsonl (two thirds Chinese, one third English about Chinese articles, keyword
   and question style, as agents ask), in that order, round and round.
2. Starts PostgreSQL 16 with pgvector (the binaries of the PyPI package `pgserver`, durable
   settings: fsync on) and indexes the collection once into it, and once into the SQLite store,
   with the default engine (jieba BM25 with CC-CEDICT query translation; USE chunk vectors, each
   store embedding every chunk itself): build time and index size per store, then warm rag_search
   p50/p95 per store in this process.
3. Starts two `tool-rag --transport http --stateless` replicas on the PostgreSQL store and Debian's
   HAProxy in front (servers/rag/haproxy.cfg with Docker's DNS replaced by the loopback replicas),
   and drives the same CALLS (default 2,000) rag_search calls through the real Streamable HTTP
   protocol (an `initialize` per client, then JSON-RPC `tools/call` POSTs to /mcp) at CONCURRENCY
   (default 50) clients: first with HAProxy sending to one replica, then to both. Each client keeps
   one HTTP/1.1 keep-alive connection and writes its requests by hand (`Connection`): httpx cost
   this process 3-5 ms of CPU per call on the replicas' own two cores, more than the rest of the
   path outside the replicas; the requests and the server are the same as with any MCP client.
4. Prints calls/s, p50 and p95 per replica count and the ratio, failures, per replica HAProxy's
   timings, open calls, CPU and threads, where the CPU went
   (replicas, PostgreSQL, HAProxy, this load generator, everything else on the machine; of the
   replicas' share, the USE query encoder's, from its CPU time per question measured here), whether
   every answer to a query was identical across replicas and phases, and whether it was identical
   to the SQLite store's answer.

Each replica runs with one BLAS thread (OMP_NUM_THREADS=1; USE pins itself to one as well), as a
replica per core should: two replicas with two threads each on 2 busy cores spin against each other.
Bounded: CALLS per phase, a 60 s limit per call, PHASE_LIMIT seconds per phase; everything started
is stopped at the end. Run: `BENCH_DATA=/path/to/corpora .venv/bin/python bench/scale_out.py
[documents] [--calls N] [--concurrency N]`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

import common  # noqa: E402  (bench/ is on the path from here)

WORK = Path(tempfile.mkdtemp(prefix="bench-scale-out-"))
os.environ["BENCH_RAG_WORK"] = str(WORK)  # rag_scale makes its collection here, and nothing else
os.environ["TOOLSUITE_ROOTS"] = str(WORK)
os.environ["TOOLSUITE_CACHE_DIR"] = str(WORK / "cache")
os.environ["OMP_NUM_THREADS"] = "1"
os.environ["TOOLSUITE_RAG_BUILDER"] = "thread"  # the builds are timed in this process
os.environ.pop("TOOLSUITE_RAG_STORE", None)

PHASE_LIMIT = 900.0
FILLER_CHARS = 2500  # characters per made document, about the full collections' average (30 M / 12,203)
CALL_TIMEOUT = 60.0
PROTOCOL = "2025-11-25"
HEADERS = {"accept": "application/json, text/event-stream", "content-type": "application/json"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(share * len(ordered)) - 1))]


# -- processes --------------------------------------------------------------------------------------

def start_replica(store_url: str, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    env = {**os.environ, "TOOLSUITE_RAG_STORE": store_url}
    env.pop("TOOLSUITE_RAG_BUILDER")
    with open(log, "wb") as stderr:
        process = subprocess.Popen([str(Path(sys.executable).parent / "tool-rag"), "--transport", "http",
                                    "--stateless", "--host", "127.0.0.1", "--port", str(port)],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr, env=env,
                                   cwd=str(WORK))
    wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
    return process, port


def wait_healthy(url: str, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args[0]} exited with {process.returncode}")
        try:
            if httpx.get(url, timeout=1).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer in {timeout:.0f} s")


def haproxy_config(port: int, replicas: list[int], log: Path) -> Path:
    """The committed servers/rag/haproxy.cfg with Docker's DNS replaced by loopback replicas (as in
    tests/test_compose.py): the balancing, health checks, retries and timeouts are the shipped ones."""
    cfg = (REPO / "servers" / "rag" / "haproxy.cfg").read_text()
    cfg = re.sub(r"(?ms)^resolvers docker\n.*?(?=^\S)", "", cfg)
    cfg = cfg.replace(" resolvers docker resolve-prefer ipv4 init-addr none", "")
    cfg = cfg.replace("bind :8100", f"bind 127.0.0.1:{port}")
    cfg = re.sub(r"(?m)^    server-template .*$",
                 "\n".join(f"    server r{i} 127.0.0.1:{p}" for i, p in enumerate(replicas)), cfg)
    cfg = cfg.replace("log stdout format raw local0 info", "log stderr format raw local0 info")
    path = log.with_suffix(".cfg")
    path.write_text(cfg)
    return path


def start_haproxy(replicas: list[int], log: Path) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    with open(log, "wb") as stderr:
        process = subprocess.Popen(["haproxy", "-db", "-f", str(haproxy_config(port, replicas, log))],
                                   stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr)
    wait_healthy(f"http://127.0.0.1:{port}/healthz", process)
    time.sleep(2.5)  # every replica passes its first health checks (rise 2, 5 s apart at most)
    return process, port


def stop(process: subprocess.Popen[bytes] | None) -> None:
    if process is None or process.poll() is not None:
        return
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait(10)


# -- CPU accounting ---------------------------------------------------------------------------------

def cpu_seconds(pids: list[int], with_children: bool = False) -> float:
    import psutil

    total = 0.0
    for pid in pids:
        try:
            process = psutil.Process(pid)
            group = [process, *(process.children(recursive=True) if with_children else [])]
            for member in group:
                times = member.cpu_times()
                total += times.user + times.system
        except psutil.NoSuchProcess:
            continue
    return total


def thread_count(pid: int) -> int:
    import psutil

    return psutil.Process(pid).num_threads()


def machine_busy() -> float:
    """CPU seconds all cores spent doing anything but idle, since boot."""
    import psutil

    times = psutil.cpu_times()
    return sum(times) - times.idle - getattr(times, "iowait", 0.0)


# -- the load ---------------------------------------------------------------------------------------

@dataclass
class Phase:
    replicas: int
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    answers: dict[str, set[str]] = field(default_factory=dict)
    results: dict[str, set[str]] = field(default_factory=dict)
    texts: dict[str, set[str]] = field(default_factory=dict)
    answered: dict[str, int] = field(default_factory=dict)  # calls answered, per question
    cpu: dict[str, float] = field(default_factory=dict)
    served: dict[str, int] = field(default_factory=dict)
    haproxy: dict[str, list[tuple[int, int]]] = field(default_factory=dict)  # per server: (Tw, Tr) ms
    server_conns: dict[str, list[int]] = field(default_factory=dict)  # per server: its connections at log time
    replica_cpu: list[float] = field(default_factory=list)
    threads: list[int] = field(default_factory=list)
    connections: int = 0  # TCP connections the load generator opened to HAProxy
    retries: int = 0

    def fail(self, kind: str) -> None:
        self.failures[kind] = self.failures.get(kind, 0) + 1


def _rpc(message_id: int, method: str, params: dict[str, Any]) -> dict[str, Any]:
    return {"jsonrpc": "2.0", "id": message_id, "method": method, "params": params}


def _body(text: str) -> dict[str, Any]:
    """A JSON-RPC answer, sent as JSON or as one Server-Sent Event."""
    if text.lstrip().startswith("{"):
        return json.loads(text)
    data = [line[5:].strip() for line in text.splitlines() if line.startswith("data:")]
    return json.loads(data[-1])


class Connection:
    """One keep-alive HTTP/1.1 connection speaking Streamable HTTP MCP by hand.

    httpx cost this process 3-5 ms of CPU per call, on the same two cores as the replicas; this
    costs a fraction of that. The server sees the same requests as from any client: POST /mcp with
    the JSON-RPC message, the Accept header both transports need, the protocol version header; it
    answers with JSON or one Server-Sent Event, chunked or not, and both are read here.
    """

    def __init__(self, host: str, port: int, path: str) -> None:
        self.host, self.port, self.path = host, port, path
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.opened = 0

    async def post(self, message: dict[str, Any], version: str | None) -> tuple[int, str]:
        if self.writer is None or self.reader is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
            self.opened += 1
        body = json.dumps(message, ensure_ascii=False).encode()
        head = (f"POST {self.path} HTTP/1.1\r\nhost: {self.host}:{self.port}\r\n"
                f"accept: {HEADERS['accept']}\r\ncontent-type: application/json\r\n"
                + (f"mcp-protocol-version: {version}\r\n" if version else "")
                + f"content-length: {len(body)}\r\n\r\n")
        try:
            self.writer.write(head.encode() + body)
            return await self._response()
        except BaseException:
            self.close()  # a half-read answer leaves the connection unusable
            raise

    async def _response(self) -> tuple[int, str]:
        assert self.reader is not None
        lines = (await self.reader.readuntil(b"\r\n\r\n")).decode("latin-1").split("\r\n")
        status = int(lines[0].split(" ", 2)[1])
        headers = {}
        for line in lines[1:]:
            if ":" in line:
                name, value = line.split(":", 1)
                headers[name.strip().lower()] = value.strip()
        if "content-length" in headers:
            data = await self.reader.readexactly(int(headers["content-length"]))
        elif headers.get("transfer-encoding", "").lower() == "chunked":
            parts = []
            while True:
                size = int((await self.reader.readuntil(b"\r\n")).split(b";")[0], 16)
                if size == 0:
                    while await self.reader.readuntil(b"\r\n") != b"\r\n":
                        pass  # trailers
                    break
                parts.append((await self.reader.readexactly(size + 2))[:-2])
            data = b"".join(parts)
        elif status in (202, 204):
            data = b""
        else:
            data = await self.reader.read()  # the server ends the answer by closing
            self.close()
        if headers.get("connection", "").lower() == "close":
            self.close()
        return status, data.decode()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def drive(url: str, calls: list[str], concurrency: int, phase: Phase) -> None:
    from urllib.parse import urlsplit

    where = urlsplit(url)
    queue: asyncio.Queue[tuple[int, str]] = asyncio.Queue()
    for number, query in enumerate(calls):
        queue.put_nowait((number, query))
    deadline = time.monotonic() + PHASE_LIMIT
    answered: list[tuple[str, dict[str, Any]]] = []
    connections = [Connection(where.hostname or "127.0.0.1", where.port or 80, where.path)
                   for _ in range(concurrency)]

    async def one_client(worker: int) -> None:
        connection = connections[worker]
        # A real client's start: initialize, then the initialized notification, then tool calls.
        status, _ = await asyncio.wait_for(connection.post(_rpc(0, "initialize", {
            "protocolVersion": PROTOCOL, "capabilities": {}, "clientInfo": {"name": f"bench-{worker}",
                                                                          "version": "1"}}), None), CALL_TIMEOUT)
        if status != 200:
            raise RuntimeError(f"initialize answered HTTP {status}")
        await asyncio.wait_for(connection.post({"jsonrpc": "2.0", "method": "notifications/initialized"},
                                               PROTOCOL), CALL_TIMEOUT)
        while not queue.empty() and time.monotonic() < deadline:
            number, query = queue.get_nowait()
            request = _rpc(number + 1, "tools/call", {"name": "rag_search", "arguments": {
                "query": query, "json_path": "collection.json", "top_k": 10}})
            started = time.perf_counter()
            try:
                status, text = await asyncio.wait_for(connection.post(request, PROTOCOL), CALL_TIMEOUT)
            except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, TimeoutError) as exc:
                phase.fail(type(exc).__name__)
                continue
            elapsed = time.perf_counter() - started
            if status != 200:
                phase.fail(f"HTTP {status}")
                continue
            result = _body(text).get("result")  # parsed as any client parses it
            if result is None or result.get("isError"):
                phase.fail("error result")
                continue
            phase.latencies.append(elapsed)
            answered.append((query, result))

    started = time.perf_counter()
    try:
        await asyncio.gather(*(one_client(worker) for worker in range(concurrency)))
    finally:
        phase.wall = time.perf_counter() - started
        for connection in connections:
            connection.close()
    phase.connections = sum(c.opened for c in connections)
    # The identical-answers check, after the clock: no client does it, so it is not load.
    for query, result in answered:
        phase.answers.setdefault(query, set()).add(json.dumps(result["structuredContent"], sort_keys=True,
                                                              ensure_ascii=False))
        phase.results.setdefault(query, set()).add(json.dumps(result["structuredContent"]["results"],
                                                              sort_keys=True, ensure_ascii=False))
        phase.texts.setdefault(query, set()).add(result["content"][-1]["text"])
        phase.answered[query] = phase.answered.get(query, 0) + 1
    left = queue.qsize()
    if left:
        phase.fail(f"not sent within {PHASE_LIMIT:.0f} s")
        phase.failures[f"not sent within {PHASE_LIMIT:.0f} s"] = left


def run_phase(replica_ports: list[int], processes: dict[str, list[int]], calls: list[str], concurrency: int,
              logs: Path) -> Phase:
    phase = Phase(len(replica_ports))
    log = logs / f"haproxy-{len(replica_ports)}.log"
    balancer, port = start_haproxy(replica_ports, log)
    try:
        groups = {**processes, "haproxy": [balancer.pid]}
        before = {name: cpu_seconds(pids, name == "postgres") for name, pids in groups.items()}
        replica_before = {pid: cpu_seconds([pid]) for pid in processes["replicas"]}
        client_before = sum(os.times()[:2])
        machine_before = machine_busy()
        asyncio.run(drive(f"http://127.0.0.1:{port}/mcp", calls, concurrency, phase))
        phase.cpu = {name: cpu_seconds(pids, name == "postgres") - before[name] for name, pids in groups.items()}
        phase.replica_cpu = [cpu_seconds([pid]) - replica_before[pid] for pid in processes["replicas"]]
        phase.threads = [thread_count(pid) for pid in processes["replicas"]]
        phase.cpu["load generator"] = sum(os.times()[:2]) - client_before
        phase.cpu["machine"] = machine_busy() - machine_before
    finally:
        stop(balancer)
    for line in log.read_text(errors="replace").splitlines():
        match = re.search(r" tool-rag/(r\d+) (-?\d+)/(-?\d+)/(-?\d+)/(-?\d+)/(-?\d+) (\d+) .*? "
                          r"\d+/\d+/\d+/(\d+)/\+?(\d+) \d+/\d+ ", line)
        if match and '"POST /mcp' in line:
            server = match.group(1)
            phase.served[server] = phase.served.get(server, 0) + 1
            # httplog timers (ms): Tw queued in HAProxy; Ta - TR from the request read to the answer's end
            phase.haproxy.setdefault(server, []).append((int(match.group(3)),
                                                         int(match.group(6)) - int(match.group(2))))
            phase.server_conns.setdefault(server, []).append(int(match.group(8)))
            phase.retries += int(match.group(9))  # HAProxy's retries of this call (503 busy, no connection)
    return phase


# -- the stores -------------------------------------------------------------------------------------

def build(service: Any, path: Path) -> tuple[float, float]:
    """(seconds to the lexical index, seconds until every vector is in), from nothing."""
    started = time.perf_counter()
    service.ready(path)
    lexical = time.perf_counter() - started
    collection = service.collections.get(path)
    collection.wait_for_vectors(timeout=3600)
    collection.builds.join(60)
    state = collection.state()
    if not state.dense_complete:
        raise RuntimeError(f"the vectors did not complete: {state} {collection.vector_error}")
    return lexical, time.perf_counter() - started


def warm_latencies(service: Any, path: Path, queries: list[str]) -> list[float]:
    times = []
    for query in queries:
        started = time.perf_counter()
        service.search(path, query, top_k=10)
        times.append(time.perf_counter() - started)
    return times


def postgres_size(backend: Any, schema: str) -> int:
    return int(backend.database.read(lambda c: c.execute(
        "SELECT COALESCE(sum(pg_total_relation_size(c.oid)), 0) FROM pg_class c JOIN pg_namespace n "
        "ON n.oid = c.relnamespace WHERE n.nspname = %s AND c.relkind = 'r'", (schema,)).fetchone()[0]))


def main() -> None:
    import logging

    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per request would be the loudest output
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("documents", nargs="?", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=50)
    args = parser.parse_args()
    import rag_scale

    if not rag_scale.DATA.exists() or not list(rag_scale.DATA.glob("*/long_context_sampled_*.json")):
        print(f"skipped: {rag_scale.DATA} is missing (set BENCH_DATA to the real records)")
        return
    if shutil.which("haproxy") is None:
        print("skipped: Debian's haproxy is not installed (python3 -m servers.system_packages --for test)")
        return
    from tests.pg_server import LocalPostgres

    path = WORK / "collection.json"
    real, chars = make_collection(path, args.documents)
    questions = [json.loads(line) for line in (REPO / "bench" / "rag_questions.jsonl").read_text(
        encoding="utf-8").splitlines() if line.strip()]
    queries = [q["query"] for q in questions]
    english = sum(q["lang"] == "en" for q in questions)
    print(f"collection: {args.documents:,} documents ({real} distinct real records of {rag_scale.DATA}, "
          f"{args.documents - real:,} made of their paragraphs as bench/rag_scale.py makes its collection), "
          f"{chars:,} characters, {path.stat().st_size / 2**20:.1f} MB; questions: the {len(queries)} of "
          f"bench/rag_questions.jsonl ({len(queries) - english} Chinese, {english} English)")
    calls = [queries[i % len(queries)] for i in range(args.calls)]
    started: list[subprocess.Popen[bytes]] = []
    server = LocalPostgres(durable=True)
    try:
        server.start()
        url = server.create_database("scale")
        report_stores(path, url, queries)
        replicas = []
        for number in range(2):
            process, port = start_replica(url, WORK / f"replica-{number}.log")
            started.append(process)
            replicas.append(port)
        warm(replicas, queries[:5])
        postmaster = server.process.pid if server.process else 0
        phases = []
        for count in (1, 2):
            processes = {"replicas": [p.pid for p in started[:count]], "postgres": [postmaster]}
            phases.append(run_phase(replicas[:count], processes, calls, args.concurrency, WORK))
        report(phases, args, queries)
    finally:
        for process in started:
            stop(process)
        server.cleanup()
        shutil.rmtree(WORK, ignore_errors=True)


def make_collection(path: Path, documents: int) -> tuple[int, int]:
    """The distinct real records, then documents made of their paragraphs up to `documents`:
    (real records, characters of all bodies)."""
    import hashlib
    import random

    import rag_scale

    records: list[dict[str, str]] = []
    seen: set[str] = set()
    for name in sorted(rag_scale.DATA.glob("*/long_context_sampled_*.json")):
        for record in json.loads(name.read_text(encoding="utf-8")):
            title = (record.get("title") or "").strip()
            body = str(record.get("page_body") or "")
            key = hashlib.sha256((title + body[:200]).encode()).hexdigest()
            if key not in seen:
                seen.add(key)
                records.append({"title": title, "page_body": body})
    real = len(records)
    rng = random.Random(11)
    titles, paragraphs = rag_scale.real_text()
    for number in range(max(0, documents - real)):
        body: list[str] = []
        wanted = int(FILLER_CHARS * rng.uniform(0.3, 1.7))
        while sum(len(p) for p in body) < wanted:
            body.append(rng.choice(paragraphs))
        records.append({"title": f"{rng.choice(titles)} ({number})", "page_body": "\n".join(body)})
    path.write_text(json.dumps(records, ensure_ascii=False), encoding="utf-8")
    return real, sum(len(r["page_body"]) for r in records)


SQLITE_ANSWERS: dict[str, tuple[str, str]] = {}
ENCODER_CPU: dict[str, float] = {}  # CPU seconds of one USE query encoding, per cross-lingual question


def report_stores(path: Path, url: str, queries: list[str]) -> None:
    from servers.rag.pg_store import PostgresBackend
    from servers.rag.server import SearchOutput, search_text
    from servers.rag.service import RagService
    from servers.rag.sqlite_store import SqliteBackend

    print("\n== one index, two stores (this process; BM25 with dictionary translation, USE chunk vectors) ==")
    rows = []
    for name, backend in (("SQLite", SqliteBackend()), ("PostgreSQL", PostgresBackend(url))):
        service = RagService(backend)
        lexical, total = build(service, path)
        collection = service.collections.get(path)
        state = collection.state()
        if name == "SQLite":
            size = common.folder_size(collection.store.folder)
        else:
            size = postgres_size(backend, collection.store.schema)
        warm_latencies(service, path, queries[:10])  # models loaded, caches filled
        times = warm_latencies(service, path, queries)
        rows.append((name, lexical, total, size, statistics.median(times), percentile(times, 0.95)))
        if name == "SQLite":
            for query in dict.fromkeys(queries):
                result = service.search(path, query, top_k=10)
                data = SearchOutput.model_validate(result, from_attributes=True).model_dump(mode="json")
                SQLITE_ANSWERS[query] = (json.dumps(data["results"], sort_keys=True, ensure_ascii=False),
                                         search_text(result, "collection.json"))
        print(f"{name}: {state.documents:,} documents, {state.chunks:,} chunks")
        if name == "PostgreSQL":
            hnsw_report(service, collection, path, queries)
            encoder_cost(collection, queries, state.cjk_share)
        backend.close()
    print(f"{'store':12s} {'lexical build':>14s} {'with vectors':>13s} {'index size':>11s} {'warm p50':>9s} "
          f"{'warm p95':>9s}")
    for name, lexical, total, size, p50, p95 in rows:
        print(f"{name:12s} {lexical:12.1f} s {total:11.1f} s {size / 2**20:8.1f} MB {p50 * 1000:6.1f} ms "
              f"{p95 * 1000:6.1f} ms")


def hnsw_report(service: Any, collection: Any, path: Path, queries: list[str]) -> None:
    """The HNSW index against the exact scan on this collection: recall of the chunk ranking's 200
    candidates, time per ranking, and how many search answers stay the same."""
    from servers.rag import search

    distinct = list(dict.fromkeys(queries))
    timings: dict[str, list[float]] = {"exact": [], "hnsw": []}
    rankings: dict[str, list[list[int]]] = {"exact": [], "hnsw": []}
    answers: dict[str, list[Any]] = {"exact": [], "hnsw": []}
    for mode in ("exact", "hnsw"):
        os.environ["TOOLSUITE_RAG_PG_EXACT_ROWS"] = "0" if mode == "hnsw" else str(10**9)
        for query in distinct:
            vector = search.query_vector(collection, query)
            started = time.perf_counter()
            rankings[mode].append(collection.store.nearest(vector, search.CANDIDATES))
            timings[mode].append(time.perf_counter() - started)
            answers[mode].append([(p.document_index, p.chunk_index, p.relevance_score)
                                  for p in service.search(path, query, top_k=10).results])
    os.environ.pop("TOOLSUITE_RAG_PG_EXACT_ROWS")
    recall = statistics.mean(len(set(a) & set(b)) / max(len(a), 1)
                             for a, b in zip(rankings["exact"], rankings["hnsw"], strict=True))
    same = sum(a == b for a, b in zip(answers["exact"], answers["hnsw"], strict=True))
    exact, hnsw = (statistics.median(timings[mode]) * 1000 for mode in ("exact", "hnsw"))
    print(f"PostgreSQL chunk-vector ranking ({search.CANDIDATES} candidates): exact (in the process) p50 "
          f"{exact:.1f} ms, "
          f"HNSW p50 {hnsw:.1f} ms, HNSW recall {recall:.3f}; rag_search answers unchanged with HNSW: {same} of "
          f"{len(distinct)}")


def encoder_cost(collection: Any, queries: list[str], cjk_share: float) -> None:
    """CPU seconds the USE encoder takes per question the engine embeds (those in another language
    than the collection; same-language questions are ranked lexically and never embedded)."""
    from servers.rag import search

    for query in dict.fromkeys(queries):
        if search.cross_lingual(query, cjk_share):
            begun = time.process_time()
            search.query_vector(collection, query)
            ENCODER_CPU[query] = time.process_time() - begun


def warm(replicas: list[int], queries: list[str]) -> None:
    """Load each replica's engines (jieba, the dictionary, USE) before anything is timed."""
    import httpx

    for port in replicas:
        for query in queries:
            body = _rpc(1, "tools/call", {"name": "rag_search", "arguments": {"query": query,
                                                                             "json_path": "collection.json"}})
            response = httpx.post(f"http://127.0.0.1:{port}/mcp", json=body, timeout=120,
                                  headers={**HEADERS, "mcp-protocol-version": PROTOCOL})
            result = _body(response.text).get("result") or {}
            if response.status_code != 200 or result.get("isError"):
                raise RuntimeError(f"warm-up call failed: {response.status_code} {response.text[:500]}")


def report(phases: list[Phase], args: argparse.Namespace, queries: list[str]) -> None:
    print(f"\n== {args.calls:,} rag_search calls at concurrency {args.concurrency}, through HAProxy "
          "(Streamable HTTP, stateless replicas, one PostgreSQL) ==")
    print(f"{'replicas':>8s} {'calls/s':>8s} {'p50':>8s} {'p95':>8s} {'failures':>9s}  calls per replica")
    rates = []
    for phase in phases:
        done = len(phase.latencies)
        rate = done / phase.wall if phase.wall else 0.0
        rates.append(rate)
        failures = sum(phase.failures.values())
        print(f"{phase.replicas:8d} {rate:8.1f} {statistics.median(phase.latencies) * 1000:6.0f} ms "
              f"{percentile(phase.latencies, 0.95) * 1000:6.0f} ms {failures:5d} of {args.calls:,}  "
              f"{', '.join(f'{k} {v:,}' for k, v in sorted(phase.served.items()))}"
              + (f"  ({phase.failures})" if failures else ""))
    print(f"ratio, 2 replicas / 1: {rates[1] / rates[0]:.2f}x (target >= 1.6x)")
    print("\nper replica (HAProxy's log: Tw queued in HAProxy, Ta - TR from HAProxy having the request to the "
          "answer's end; the replica's open calls from HAProxy when each call ended; its CPU and threads):")
    for phase in phases:
        for number, server in enumerate(sorted(phase.haproxy)):
            timers = phase.haproxy[server]
            waits, answers = [t[0] for t in timers], [t[1] for t in timers]
            print(f"  {phase.replicas} replica{'s' if phase.replicas > 1 else ''}, {server}: Ta-TR p50 "
                  f"{statistics.median(answers):.0f} ms p95 {percentile(answers, 0.95):.0f} ms, Tw p95 "
                  f"{percentile(waits, 0.95):.0f} ms, open calls mean {statistics.mean(phase.server_conns[server]):.1f}"
                  f", CPU {phase.replica_cpu[number]:.1f} s ({phase.replica_cpu[number] / phase.wall:.0%} of a core), "
                  f"{phase.threads[number]} threads")
        print(f"  {phase.replicas} replica{'s' if phase.replicas > 1 else ''}: HAProxy retried {phase.retries} "
              f"calls; the load generator opened {phase.connections} connections for {args.concurrency} clients")
    print("\nwhere the CPU went (CPU seconds, and the share of the 2 cores over the phase):")
    for phase in phases:
        capacity = 2 * phase.wall
        parts = ["replicas", "postgres", "haproxy", "load generator"]
        ours = sum(phase.cpu[p] for p in parts)
        line = ", ".join(f"{p} {phase.cpu[p]:.1f} s ({phase.cpu[p] / capacity:.0%})" for p in parts)
        other = max(0.0, phase.cpu["machine"] - ours)
        idle = max(0.0, capacity - phase.cpu["machine"])
        encoder = sum(ENCODER_CPU.get(q, 0.0) * count for q, count in phase.answered.items())
        encoded = sum(count for q, count in phase.answered.items() if q in ENCODER_CPU)
        print(f"  {phase.replicas} replica{'s' if phase.replicas > 1 else ''}, {phase.wall:.1f} s: {line}, "
              f"other processes on the machine {other:.1f} s ({other / capacity:.0%}), idle {idle:.1f} s "
              f"({idle / capacity:.0%}); per call: replicas {phase.cpu['replicas'] / len(phase.latencies) * 1000:.0f}"
              f" ms, PostgreSQL {phase.cpu['postgres'] / len(phase.latencies) * 1000:.1f} ms")
        print(f"    of the replicas' CPU, the USE query encoder about {encoder:.1f} s ({encoder / capacity:.0%} of the "
              f"cores): {encoded:,} calls asked across languages x its CPU time per question measured in this "
              f"process (mean {statistics.mean(ENCODER_CPU.values()) * 1000:.0f} ms)" if ENCODER_CPU else
              "    no question was embedded (none across languages)")
    distinct = list(dict.fromkeys(queries))
    answered = {q for phase in phases for q in phase.answers}
    same_everywhere = sum(1 for q in answered if len({a for phase in phases for a in phase.answers.get(q, ())}) == 1
                          and len({t for phase in phases for t in phase.texts.get(q, ())}) == 1)
    as_sqlite = sum(1 for q in answered
                    if {a for phase in phases for a in phase.results.get(q, ())} == {SQLITE_ANSWERS[q][0]}
                    and {t for phase in phases for t in phase.texts.get(q, ())} == {SQLITE_ANSWERS[q][1]})
    print(f"\nidentical answers: {same_everywhere} of {len(answered)} distinct queries got one and the same answer "
          f"(text and structured result) from every call, across both replicas and both phases; "
          f"{as_sqlite} of {len(distinct)} are identical to the SQLite store's answer")
    if as_sqlite < len(answered):
        differing = [q for q in answered if {a for phase in phases for a in phase.results.get(q, ())} !=
                     {SQLITE_ANSWERS[q][0]}]
        for query in differing[:3]:
            ours = json.loads(next(iter(phases[-1].results.get(query) or phases[0].results[query])))
            theirs = json.loads(SQLITE_ANSWERS[query][0])
            print(f"  e.g. {query!r}: PostgreSQL {[(r['document_index'], r['chunk_index']) for r in ours]} / "
                  f"SQLite {[(r['document_index'], r['chunk_index']) for r in theirs]}")


if __name__ == "__main__":
    main()

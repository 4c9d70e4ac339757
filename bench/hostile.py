"""The hostile corpus against every tool of every server that takes a path or URL.

Each server runs in this process behind a long-lived in-memory session (as a host keeps one server
process per server), so what the calls leave behind is visible here. The corpus: FIFOs, a unix
socket, character devices (a node made with mknod where the user may, and /dev as a root), a folder,
a sparse 5 GB file, /proc and /sys files inside a root, symlinks out of the root (file and folder),
traversal spellings, deeply nested JSON, a ZIP bomb, a decompression-bomb PNG, truncated and absurd
media, data: URIs, private and metadata URLs (directly and through a redirect), trickling, silent
and endless URLs, a gzip bomb. A secret file sits outside the roots; a symlink keeps being swapped
between it and a file inside while the corpus runs.

Printed: calls, findings (target 0: a hang, a crash, the outside secret in a result, an "internal
error", a traceback, a hostile input accepted that must be refused), the slowest refusal (target
under 1 s; calls that ran into the tool's time limit are counted apart), and thread, child process,
descriptor and temporary-file counts before and after.

Run: `.venv/bin/python bench/hostile.py` (about two and a half minutes here).
"""

from __future__ import annotations

import base64
import contextlib
import os
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
from common import work_area  # noqa: E402

WORK = work_area("hostile")
ROOT = WORK / "root"
OUTSIDE = WORK / "outside"
TEMPORARY = WORK / "tmp"
TOOL_SECONDS = 5.0
HANG_SECONDS = TOOL_SECONDS + 5  # no answer by then is a hang
SECRET = "the-outside-secret-8c1f"
SITE_HOST = "127.0.0.3"  # the hostile site's address, the only one allow-listed: every other loopback is refused

REFUSE, ANY = "refuse", "any"


@dataclass
class Case:
    name: str
    value: str
    expect: str = REFUSE  # REFUSE: must be an error; ANY: may also be read safely (a listing, a note)
    local: bool = True  # a local path (else a URL)


@dataclass
class Figures:
    calls: int = 0
    findings: list[str] = field(default_factory=list)
    refusals: list[tuple[float, str]] = field(default_factory=list)
    time_limited: list[tuple[float, str]] = field(default_factory=list)
    seconds: float = 0.0


def build_corpus(base: str) -> tuple[list[Case], list[Any]]:
    """The hostile objects in ROOT (and their cases); returns (cases, objects to keep alive)."""
    from tests import hostile_cases as hostile
    from tests import hostile_files

    (OUTSIDE / "secret.txt").write_text(SECRET)
    keep: list[Any] = []
    cases = [Case("FIFO", "pipe.mp3"), Case("FIFO via file://", f"file://{ROOT}/pipe.mp3"),
             Case("unix socket", "socket.wav"), Case("folder", "folder.pdf"),
             Case("/dev/zero (root /dev)", "/dev/zero"), Case("/dev/null (root /dev)", "/dev/null"),
             Case("sparse 5 GB", "sparse.mp4"), Case("/proc/self/environ", "/proc/self/environ"),
             Case("/proc/self/status", "/proc/self/status"),
             Case("/proc/self/root escape", "/proc/self/root/etc/passwd"),
             Case("/proc/kmsg", "/proc/kmsg"),
             Case("symlink out", "out.txt"), Case("folder symlink out", "up/secret.txt"),
             Case("swapped symlink", "flip.txt", ANY), Case("../", "../outside/secret.txt"),
             Case("sub/../../", "sub/../../outside/secret.txt"),
             Case("%2e%2e in file://", f"file://{ROOT}/%2e%2e/outside/secret.txt"),
             Case("file://localhost/etc/passwd", "file://localhost/etc/passwd"), Case("/etc/passwd", "/etc/passwd"),
             Case("~", "~/.bashrc"), Case("NUL", "a.txt\x00.pdf"), Case("%00", f"file://{ROOT}/a.txt%00.pdf"),
             Case("deep JSON", "deep.json", ANY), Case("deep JSON data: URI",
                                                       "data:application/json;base64," +
                                                       base64.b64encode(hostile.deep_json(100_000)).decode(), ANY),
             Case("ZIP bomb", "bomb.zip", ANY), Case("PNG bomb", "bomb.png", ANY),
             Case("PNG bomb data: URI", "data:image/png;base64," +
                  base64.b64encode(hostile_files.png_header_only(60_000, 60_000)).decode(), ANY),
             Case("truncated WAV", "cut.wav", ANY), Case("truncated MP4", "cut.mp4", ANY),
             Case("truncated PDF", "cut.pdf", ANY)]
    hostile.make_fifo(ROOT / "pipe.mp3")
    _path, listening = hostile.make_socket(ROOT / "socket.wav")
    keep.append(listening)
    (ROOT / "folder.pdf").mkdir()
    (ROOT / "sub").mkdir()
    (ROOT / "a.txt").write_text("inside")
    if hostile.make_char_device(ROOT / "zero.mp3") is not None:
        cases.append(Case("char device (mknod)", "zero.mp3"))
    hostile.make_sparse(ROOT / "sparse.mp4")
    os.symlink(OUTSIDE / "secret.txt", ROOT / "out.txt")
    os.symlink(OUTSIDE, ROOT / "up")
    (ROOT / "deep.json").write_bytes(hostile.deep_json())
    (ROOT / "bomb.zip").write_bytes(hostile.zip_bomb())
    (ROOT / "bomb.png").write_bytes(hostile_files.png_header_only(60_000, 60_000))
    (ROOT / "cut.wav").write_bytes(hostile.wav_header_only())
    (ROOT / "cut.mp4").write_bytes(hostile.TRUNCATED_MP4)
    (ROOT / "cut.pdf").write_bytes(hostile.TRUNCATED_PDF)
    for name, data in hostile_files.media_samples().items():
        (ROOT / name).write_bytes(data)
        cases.append(Case(f"absurd media {name}", name, ANY))
    sysfs = next((Path(folder) / name for folder, _d, files in os.walk("/sys/kernel") for name in files
                  if os.access(Path(folder) / name, os.R_OK)), None)
    if sysfs is not None:
        cases.append(Case("/sys file", str(sysfs)))
    port = base.rsplit(":", 1)[1]
    cases += [Case(name, url, local=False) for name, url in [
        ("loopback 127.0.0.1", f"http://127.0.0.1:{port}/ok"), ("localhost", f"http://localhost:{port}/ok"),
        ("metadata", "http://169.254.169.254/latest/meta-data/"), ("[::1]", f"http://[::1]:{port}/ok"),
        ("decimal loopback", f"http://2130706433:{port}/ok"), ("hex loopback", f"http://0x7f000001:{port}/ok"),
        ("private 10/8", "http://10.0.0.1/"), ("[::ffff:127.0.0.1]", f"http://[::ffff:127.0.0.1]:{port}/ok"),
        ("redirect to metadata", f"{base}/redirect?to=http://169.254.169.254/latest/"),
        ("redirect to loopback", f"{base}/redirect?to=http://127.0.0.1:{port}/ok"),
        ("file: scheme", "file:///etc/passwd"), ("gopher", "gopher://127.0.0.1/"),
        ("gzip bomb", f"{base}/encoded?as=gzip&body=bomb"), ("endless body", f"{base}/endless"),
    ]]
    cases += [Case(name, f"{base}{route}", ANY, local=False) for name, route in [
        ("trickled headers", "/trickle-headers"), ("trickled body", "/trickle-body"), ("silent", "/hang")]]
    return cases, keep


@contextlib.contextmanager
def flipping() -> Any:
    """`ROOT/flip.txt` swapped between a file inside and a symlink to the secret outside, all along."""
    script = ("import os, sys\nroot, secret = sys.argv[1:3]\nwhile True:\n"
              "    os.symlink(secret, root + '/.l'); os.replace(root + '/.l', root + '/flip.txt')\n"
              "    open(root + '/.f', 'w').write('inside'); os.replace(root + '/.f', root + '/flip.txt')\n")
    (OUTSIDE / "secret.txt").write_text(SECRET)
    (ROOT / "flip.txt").write_text("inside")
    process = subprocess.Popen([sys.executable, "-c", script, str(ROOT), str(OUTSIDE / "secret.txt")])
    try:
        yield
    finally:
        process.kill()
        process.wait()


def counts() -> dict[str, Any]:
    from tests import hostile_cases as hostile

    cache = os.environ["TOOLSUITE_CACHE_DIR"]
    descriptors = {kind: n for kind, n in hostile.open_descriptors().items() if not kind.startswith(cache)}
    busy = hostile.busy_threads()
    return {"call threads still in the suite's code": [t for t in busy if t.startswith("AnyIO worker")],
            "background threads of the servers": [t for t in busy if not t.startswith("AnyIO worker")],
            "threads (all, native pools included)": len(os.listdir("/proc/self/task")),
            "child processes": hostile.child_processes(),
            "open descriptors (outside the cache)": descriptors,
            "temporary files": hostile.temporary_files(TEMPORARY)}


async def quiet(clients: dict[str, Any], targets: list[Any]) -> dict[str, Any]:
    """The counts once stopped calls have unwound (up to 10 s) and idle pool threads have expired
    (AnyIO drops a worker idle for 10 s when the next call comes: one cheap call per server)."""
    import anyio

    from tests import hostile_cases as hostile

    hostile.settle(lambda: counts()["call threads still in the suite's code"], 10)
    await anyio.sleep(11)
    for server in {t.server: t for t in targets if t.argument != "url"}.values():
        await clients[server.server].call_tool(server.tool, server.arguments("a.txt"))
    return counts()


def judge(case: Case, target: Any, result: Any, seconds: float, figures: Figures) -> None:
    import json

    where = f"{target.name} <- {case.name}"
    texts = [getattr(block, "text", "") or "" for block in result.content]
    text = texts[-1] if texts else ""
    everything = "\n".join(texts) + json.dumps(result.structured_content or {}, ensure_ascii=False)
    if SECRET in everything:
        figures.findings.append(f"LEAK {where}: the outside secret came back")
    if "Traceback" in everything:
        figures.findings.append(f"TRACEBACK {where}: {text[:160]!r}")
    if "internal error" in text:
        figures.findings.append(f"INTERNAL ERROR {where}: {text[:160]!r}")
    if "ran out of memory" in text:
        figures.findings.append(f"MEMORY {where}: {text[:160]!r}")
    if "did not finish within" in text:
        figures.time_limited.append((seconds, where))
    elif result.is_error:
        figures.refusals.append((seconds, where))
    elif case.expect == REFUSE:
        figures.findings.append(f"ACCEPTED {where}: {text[:160]!r}")


async def run() -> None:
    from mcp import Client

    from servers.registry import SERVERS
    from tests import hostile_cases as hostile

    TEMPORARY.mkdir()
    ROOT.mkdir()
    OUTSIDE.mkdir()
    tempfile.tempdir = str(TEMPORARY)
    roots = [str(ROOT), "/dev", "/proc/self", "/proc", "/sys/kernel"]
    os.environ.update(TOOLSUITE_ROOTS=os.pathsep.join(roots), TOOLSUITE_TOOL_TIMEOUT=str(TOOL_SECONDS),
                      TOOLSUITE_ALLOWED_HOSTS=SITE_HOST, TOOLSUITE_OUTPUT_DIR=str(WORK / "output"))
    start_counts = counts()
    with hostile.hostile_site_process(bombs=True, host=SITE_HOST) as base, flipping():
        cases, _keep = build_corpus(base)
        async with contextlib.AsyncExitStack() as stack:
            clients = {entry.name: await stack.enter_async_context(Client(entry.build())) for entry in SERVERS}
            sandbox = None
            created = await clients["tool-python"].call_tool("create_sandbox", {})
            if not created.is_error:
                sandbox = (created.structured_content or {}).get("sandbox_id")
            targets = await hostile.path_targets(sandbox_id=sandbox)
            # Round 1 finds what a cold server does (engines load on first use); round 2, the steady
            # state, is what the counts are taken around: what loads once and stays is not left behind.
            cold = await one_round(clients, targets, cases)
            before = await quiet(clients, targets)
            warm = await one_round(clients, targets, cases)
            after = await quiet(clients, targets)
    print(f"targets (tool arguments taking a path or URL): {len(targets)}; corpus: {len(cases)} cases; "
          f"tool-python sandbox: {'real' if sandbox else 'none (upload checked against a bad id)'}")
    for title, figures in (("round 1 (cold)", cold), ("round 2 (warm)", warm)):
        report(title, figures)
    print("counts                                 start -> before round 2 -> after round 2")
    for key in before:
        print(f"  {key:38} {show(start_counts[key])} -> {show(before[key])} -> {show(after[key])}")
    grown = {kind: n - before["open descriptors (outside the cache)"].get(kind, 0)
             for kind, n in after["open descriptors (outside the cache)"].items()
             if n > before["open descriptors (outside the cache)"].get(kind, 0)}
    for kind, n in grown.items():
        print(f"    descriptors more after round 2: {n} x {kind}")
    for name in after["background threads of the servers"]:
        print(f"    background: {name}")
    print("opening a file five folders deep (median µs):")
    for name, micros in open_costs():
        print(f"  {name:40} {micros:7.1f}")


async def one_round(clients: dict[str, Any], targets: list[Any], cases: list[Case]) -> Figures:
    import anyio

    figures = Figures()
    slow = [c for c in cases if not c.local and c.expect == ANY]
    started = time.monotonic()
    for target in targets:
        local_only = target.argument in ("json_path", "local_file_path")
        for case in cases:
            if case in slow or (not case.local and local_only) or (case.local and target.argument == "url"):
                continue
            await one(clients[target.server], target, case, figures)
    # Calls that can only end at the tool's time limit run together, as a busy host sends them.
    async with anyio.create_task_group() as group:
        for target in targets:
            if target.argument not in ("json_path", "local_file_path"):
                for case in slow:
                    group.start_soon(one, clients[target.server], target, case, figures)
    figures.seconds = time.monotonic() - started
    return figures


async def one(client: Any, target: Any, case: Case, figures: Figures) -> None:
    import anyio

    figures.calls += 1
    started = time.monotonic()
    try:
        with anyio.fail_after(HANG_SECONDS):
            result = await client.call_tool(target.tool, target.arguments(case.value))
    except TimeoutError:
        figures.findings.append(f"HANG {target.name} <- {case.name}: no answer in {HANG_SECONDS:g} s")
        return
    except Exception as exc:  # the session broke: the server crashed
        figures.findings.append(f"CRASH {target.name} <- {case.name}: {type(exc).__name__}: {str(exc)[:120]}")
        return
    judge(case, target, result, time.monotonic() - started, figures)


def open_costs(repeats: int = 3000) -> list[tuple[str, float]]:
    """Microseconds to open a file five folders deep, each way (median of `repeats`)."""
    import statistics

    from shared import beneath, inputs

    folder = ROOT / "a" / "b" / "c" / "d" / "e"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "f.txt").write_text("x")
    candidate, roots = str(folder / "f.txt"), [str(ROOT)]

    def by_name() -> None:  # what the policy did before: resolve, check, open again by name
        resolved = os.path.realpath(candidate)
        assert resolved.startswith(str(ROOT))
        fd = os.open(resolved, os.O_RDONLY)
        os.fstat(fd)
        os.close(fd)

    def kernel() -> None:
        found = beneath._try_openat2(candidate, roots)
        assert found is not None
        os.close(found.fd)

    def walk() -> None:
        os.close(beneath._walk(candidate, roots).fd)

    def held() -> None:
        with inputs.open_local("a/b/c/d/e/f.txt"):
            pass

    def opened() -> None:
        with inputs.open_input("a/b/c/d/e/f.txt"):
            pass

    figures = []
    for name, fn in [("realpath + open by name (before)", by_name), ("openat2 RESOLVE_BENEATH", kernel),
                     ("component walk (fallback)", walk), ("open_local (lookup, checks, reopen)", held),
                     ("open_input (open_local + type sniff)", opened)]:
        times = []
        for _ in range(repeats):
            started = time.perf_counter()
            fn()
            times.append(time.perf_counter() - started)
        figures.append((name, statistics.median(times) * 1e6))
    return figures


def report(title: str, figures: Figures) -> None:
    print(f"{title}: calls {figures.calls} in {figures.seconds:.1f} s; findings {len(figures.findings)} (target 0)")
    for finding in figures.findings[:40]:
        print(f"  {finding}")
    if figures.refusals:
        ordered = sorted(figures.refusals, reverse=True)
        median = ordered[len(ordered) // 2][0]
        print(f"  refusals {len(ordered)}: slowest {ordered[0][0]:.3f} s ({ordered[0][1]}), median {median:.4f} s "
              "(target: slowest under 1 s)")
        for seconds, where in ordered[1:3]:
            print(f"    next: {seconds:.3f} s ({where})")
    if figures.time_limited:
        longest = max(figures.time_limited)
        print(f"  ended by the tool's time limit ({TOOL_SECONDS:g} s; trickling and silent URLs): "
              f"{len(figures.time_limited)} calls, the last answered after {longest[0]:.2f} s")


def show(value: Any) -> str:
    if isinstance(value, dict):
        return str(sum(value.values()))
    return str(len(value)) if isinstance(value, list) else str(value)


if __name__ == "__main__":
    import anyio

    anyio.run(run)

"""The standing attack suite of tool-python: each test is an attack that must fail, written so that it
fails while the hole it names is open. Run on CI (bubblewrap is installed by `make test`), never
skipped there. The containment basics (files, network, limits) are in test_python_sandbox_security.py.
"""

from __future__ import annotations

import ast
import json
import os
import time
from pathlib import Path

import pytest

from servers.python import protocol
from tests import sandboxes
from tests.local_http import Site
from tests.sandboxes import attack_session

pytestmark = pytest.mark.anyio
hardened = sandboxes.hardened  # the shared fixture


def _peak_rss_mb() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    raise AssertionError("no VmHWM in /proc/self/status")


FORGE = """
import json, os
forged = json.dumps({"id": None, "cell": None, "stdout": "FORGED", "stderr": "", "stdout_dropped": 0,
                     "stderr_dropped": 0, "result": "'FORGED'", "error": None, "images": [], "seconds": 0,
                     "exit_code": 0, "timed_out": False, "state_lost": False}).encode() + b"\\n"
reached = []
targets = [f"/proc/self/fd/{n}" for n in os.listdir("/proc/self/fd")] + ["/proc/1/fd/4", "/proc/1/fd/1"]
for n in range(3, 64):
    try:
        os.write(n, forged)
        reached.append(n)
    except OSError:
        pass
for path in targets:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NONBLOCK)
        os.write(fd, forged)
        os.close(fd)
        reached.append(path)
    except OSError:
        pass
'done'
"""


async def test_user_code_cannot_forge_a_reply(hardened):
    """Issue: user code wrote a reply line to the kernel's reply descriptor (fd 4) and the server
    returned it as the cell's output."""
    async with attack_session(hardened) as s:
        cell = await s.run(FORGE)
        # (What the cell wrote to its own stdout descriptors is its output; the forged fields are not.)
        assert cell["result"] == "'done'" and cell["stdout"] != "FORGED"
        after = await s.run("1 + 1")
        assert after["result"] == "2" and after["stdout"] == "" and after["error"] is None
        command = await s.command("echo real")
        assert command["stdout"] == "real\n"
        await s.witness_still_serves()


async def test_a_background_thread_cannot_forge_later_replies(hardened):
    """A thread left running by one cell writes forged lines while later calls run."""
    async with attack_session(hardened) as s:
        started = await s.run("import threading, time\n" + FORGE.replace("'done'", "") +
                              "def spam():\n    while True:\n        for n in range(3, 64):\n"
                              "            try:\n                os.write(n, forged)\n"
                              "            except OSError:\n                pass\n        time.sleep(0.001)\n"
                              "threading.Thread(target=spam, daemon=True).start()\n'started'")
        assert started["result"] == "'started'"
        for _ in range(5):
            cell = await s.run("import time\ntime.sleep(0.05)\n6 * 7")
            assert cell["result"] == "42" and cell["stdout"] != "FORGED", cell
            command = await s.command("echo real")
            assert command["stdout"] == "real\n" and command["exit_code"] == 0
        await s.witness_still_serves()


async def test_flooding_the_reply_channels_does_not_grow_the_server(hardened):
    """Issue: 1.5 GB written to the reply descriptor grew the server process to 3.2 GB."""
    async with attack_session(hardened) as s:
        before = _peak_rss_mb()
        flood = await s.run("import os\nchunk = b'x' * (1 << 20)\nfor n in range(3, 64):\n    try:\n"
                            "        for _ in range(300):\n            os.write(n, chunk)\n    except OSError:\n"
                            "        pass\n'survived'")
        grown = _peak_rss_mb() - before
        assert grown < 150, f"the server grew by {grown:.0f} MB"
        assert flood["error"] is not None or flood["result"] == "'survived'"
        assert (await s.run("1 + 1"))["result"] == "2"
        await s.witness_still_serves()


def test_the_reply_reader_skips_stale_ids_and_caps_lines():
    read, write = os.pipe()
    try:
        reader = protocol.LineReader(read, cap=1000)
        os.write(write, json.dumps({"id": "old", "stdout": "stale"}).encode() + b"\n" + b"not json\n"
                 + json.dumps({"id": "now", "stdout": "fresh", "extra": "dropped"}).encode() + b"\n")
        reply = protocol.read_reply(reader, time.monotonic() + 5, "now")
        assert reply is not None and reply["stdout"] == "fresh"
        clean = protocol.clean_code_reply({**reply, "stdout": "y" * 5000, "images": ["A" * 10, 5]}, 100)
        assert "extra" not in clean and clean["stdout"].startswith("y" * 100) and len(clean["stdout"]) < 200
        assert clean["images"] == ["A" * 10] and clean["images_refused"] == 1
        os.write(write, b"z" * 5000)
        with pytest.raises(protocol.LineTooLong):
            protocol.read_reply(reader, time.monotonic() + 5, "now")
        assert len(reader.buffer) == 0
    finally:
        os.close(read)
        os.close(write)


KEYRING_ATTACK = r"""
import ctypes, json, os
libc = ctypes.CDLL(None, use_errno=True)
KEYCTL, SEARCH, READ = {keyctl}, 10, 11
found = {{}}
key = libc.syscall(KEYCTL, SEARCH, ctypes.c_long(-3), b"user", b"toolsuite-test-key", 0)
found["search"] = key
ids = [int(line.split()[0], 16) for line in open("/proc/keys") if "toolsuite-test-key" in line]
payloads = []
for key_id in ids + ([key] if key > 0 else []):
    buffer = ctypes.create_string_buffer(64)
    if libc.syscall(KEYCTL, READ, key_id, buffer, 64) > 0:
        payloads.append(buffer.value.decode())
found["payloads"] = payloads
print(json.dumps(found))
"""

KEYRING_HOST = r"""
import ctypes, json, os, sys
sys.path.insert(0, {repo!r})
libc = ctypes.CDLL(None, use_errno=True)
# A session keyring of our own holding a secret, as a server started by a service manager has.
libc.syscall({keyctl}, 1, None)
added = libc.syscall({add_key}, b"user", b"toolsuite-test-key", b"KEYRING-SECRET", 14, ctypes.c_long(-3))
from servers.python.sandbox import SandboxManager
manager = SandboxManager()
try:
    sandbox = manager.create(600)
    result = manager.run_code(sandbox.id, {code!r})
    print(json.dumps({{"added": added, "stdout": result.stdout, "error": result.error}}))
finally:
    manager.shutdown()
"""


def _syscall_number(name: str) -> int:
    import pyseccomp

    return pyseccomp.resolve_syscall(pyseccomp.Arch.NATIVE, name)


def test_the_servers_session_keyring_is_out_of_reach(tmp_path):
    """Issue: code in a sandbox read the server's session keys with keyctl(SEARCH/READ)."""
    import subprocess
    import sys

    from tests.conftest import REPO

    keyctl, add_key = _syscall_number("keyctl"), _syscall_number("add_key")
    code = KEYRING_ATTACK.format(keyctl=keyctl)
    script = KEYRING_HOST.format(repo=str(REPO), keyctl=keyctl, add_key=add_key, code=code)
    env = {**os.environ, "TOOLSUITE_SANDBOX_DIR": str(tmp_path / "sandboxes")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert report["error"] is None, report
    inside = json.loads(report["stdout"])
    assert "KEYRING-SECRET" not in done.stdout and inside["payloads"] == []
    assert inside["search"] < 0


REFUSED_CALLS = r"""
import ctypes, errno, json, os, subprocess
libc = ctypes.CDLL(None, use_errno=True)
numbers = {numbers}
results = {{}}
def attempt(name, *args):
    value = libc.syscall(numbers[name], *args)
    results[name] = [value, ctypes.get_errno() if value < 0 else 0]
child = subprocess.Popen(["sleep", "30"])
buffer = ctypes.create_string_buffer(16)
class IoVec(ctypes.Structure):
    _fields_ = [("base", ctypes.c_void_p), ("len", ctypes.c_size_t)]
local = IoVec(ctypes.cast(buffer, ctypes.c_void_p), 16)
remote = IoVec(ctypes.cast(buffer, ctypes.c_void_p), 16)
params = ctypes.create_string_buffer(120)
pidfd = os.pidfd_open(os.getpid())
# Each of these succeeds without the filter (no privilege needed); each must fail with EPERM.
attempt("ptrace", 16, child.pid, 0, 0)                            # PTRACE_ATTACH to our own child
attempt("process_vm_readv", os.getpid(), ctypes.byref(local), 1, ctypes.byref(remote), 1, 0)
attempt("keyctl", 0, ctypes.c_long(-3), 1)                         # KEYCTL_GET_KEYRING_ID
attempt("add_key", b"user", b"k", b"v", 1, ctypes.c_long(-3))
attempt("io_uring_setup", 1, params)
attempt("userfaultfd", 1)                                          # UFFD_USER_MODE_ONLY
attempt("unshare", 0x10000000)                                     # CLONE_NEWUSER
attempt("pidfd_getfd", pidfd, 0, 0)
attempt("kcmp", os.getpid(), os.getpid(), 0, 0, 0)
attempt("open_tree", -100, b"/", 0)
attempt("bpf", 0, None, 0)
attempt("mount", b"none", b"/tmp", b"tmpfs", 0, None)
attempt("perf_event_open", None, 0, -1, -1, 0)
child.kill()
nested = subprocess.run(["bwrap", "--unshare-user", "--ro-bind", "/", "/", "true"], capture_output=True)
results["nested bwrap"] = [nested.returncode, 0]
print(json.dumps(results))
"""

FILTERED = ("ptrace", "process_vm_readv", "keyctl", "add_key", "io_uring_setup", "userfaultfd", "unshare",
            "pidfd_getfd", "kcmp", "open_tree", "bpf", "mount", "perf_event_open")


async def test_the_syscall_filter_refuses_what_research_code_never_needs(hardened):
    """ptrace, keyrings, io_uring, userfaultfd, eBPF, mounts and nested user namespaces are refused."""
    import errno

    numbers = {name: _syscall_number(name) for name in FILTERED}
    async with attack_session(hardened) as s:
        attempt = await s.run(REFUSED_CALLS.format(numbers=numbers))
        assert attempt["error"] is None, attempt["error"]
        results = json.loads(attempt["stdout"])
        for name in FILTERED:
            assert results[name] == [-1, errno.EPERM], (name, results[name])
        assert results["nested bwrap"][0] != 0
        status = await s.run("open('/proc/self/status').read().split('Seccomp:')[1].split()[0]")
        assert status["result"] == "'2'"  # filter mode
        await s.witness_still_serves()


async def test_the_output_folder_cannot_be_redirected_by_a_symlink(hardened, root, tmp_path):
    """Issue: with <root>/out replaced by a symlink, downloads were written where it pointed."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (root / "out").symlink_to(elsewhere, target_is_directory=True)
    async with attack_session(hardened) as s:
        await s.run("open('report.txt', 'w').write('data')")
        result = await s.call("download_file_from_sandbox_to_local", sandbox_file_path="report.txt")
        assert result.is_error and "symlink" in result.content[0].text, result.content[0].text
        assert str(tmp_path) not in result.content[0].text
        assert list(elsewhere.iterdir()) == []
        # A real folder works; a file name planted there as a symlink is never written through,
        # and names never overwrite.
        (root / "out").unlink()
        (root / "out").mkdir()
        victim = tmp_path / "victim.txt"
        victim.write_text("untouched")
        (root / "out" / "report.txt").symlink_to(victim)
        for _ in range(2):
            done = await s.call("download_file_from_sandbox_to_local", sandbox_file_path="report.txt")
            assert not done.is_error, done.content[0].text
        assert victim.read_text() == "untouched"
        assert sorted(p.name for p in (root / "out").iterdir()) == ["report-1.txt", "report-2.txt", "report.txt"]
        assert (root / "out" / "report-1.txt").read_text() == "data"
        await s.witness_still_serves()


async def test_uploads_onto_or_from_fifos_and_other_non_files_never_hang(hardened, root):
    """Issue: uploading onto a FIFO planted in the sandbox hung the call and, holding the sandbox's
    lock, every later call on that sandbox."""
    (root / "data.txt").write_text("payload")
    os.mkfifo(root / "host.fifo")
    async with attack_session(hardened) as s:
        await s.run("import os, socket\nos.mkfifo('trap')\nos.mkdir('folder')\n"
                    "socket.socket(socket.AF_UNIX).bind('sock')")
        for target, kind in (("trap", "FIFO"), ("sock", "socket"), ("folder", None)):
            started = time.monotonic()
            result = await s.call("upload_file_from_local_to_sandbox", local_file_path="data.txt",
                                  sandbox_file_path=target)
            assert time.monotonic() - started < 5
            if kind is None:  # a folder keeps the file's own name
                assert not result.is_error and result.structured_content["sandbox_path"] == "/home/user/folder/data.txt"
            else:
                assert result.is_error and kind in result.content[0].text, result.content[0].text
        started = time.monotonic()
        from_fifo = await s.call("upload_file_from_local_to_sandbox", local_file_path="host.fifo")
        assert time.monotonic() - started < 5
        assert from_fifo.is_error and "regular file" in from_fifo.content[0].text, from_fifo.content[0].text
        assert (await s.run("import stat, os\nstat.S_ISFIFO(os.lstat('trap').st_mode)"))["result"] == "True"
        overwrite = await s.call("upload_file_from_local_to_sandbox", local_file_path="data.txt",
                                 sandbox_file_path="folder/data.txt")
        assert not overwrite.is_error
        assert (await s.run("open('folder/data.txt').read()"))["result"] == "'payload'"
        await s.witness_still_serves()


def _host_processes_with(marker: str) -> list[int]:
    """Host pids whose command line holds `marker` (sandboxed processes are visible from the host)."""
    found = []
    for name in os.listdir("/proc"):
        if name.isdigit() and int(name) != os.getpid():
            try:
                if marker.encode() in Path(f"/proc/{name}/cmdline").read_bytes():
                    found.append(int(name))
            except OSError:
                continue
    return found


async def _gone(marker: str, within: float = 3.0) -> bool:
    import anyio

    deadline = time.monotonic() + within
    while _host_processes_with(marker):
        if time.monotonic() > deadline:
            return False
        await anyio.sleep(0.05)
    return True


async def test_nothing_a_call_starts_outlives_it(hardened):
    """Issue: `setsid nohup sh -c 'while :; do ...; done' &` kept running between calls until expiry.
    Policy: when a call ends, every process it started is killed, detached or not."""
    async with attack_session(hardened) as s:
        await s.command("setsid nohup sh -c 'while :; do echo x >> tick; sleep 0.02; done; : 4711.1' "
                        ">/dev/null 2>&1 &")
        await s.run("import os, subprocess, time\n"
                    "if os.fork() == 0:\n"
                    "    os.setsid()\n"
                    "    if os.fork() == 0:\n"
                    "        os.execvp('sleep', ['sleep', '4711.2'])\n"
                    "    os._exit(0)\n"
                    "held = subprocess.Popen(['sleep', '4711.3'])\n"
                    "time.sleep(0.2)")
        assert await _gone("4711."), _host_processes_with("4711.")
        first = (await s.run("import os\nos.path.getsize('tick') if os.path.exists('tick') else 0"))["result"]
        time.sleep(0.3)
        second = (await s.run("os.path.getsize('tick') if os.path.exists('tick') else 0"))["result"]
        assert first == second, "a background loop kept writing between calls"
        await s.witness_still_serves()


async def test_the_interpreter_is_paused_between_calls(hardened):
    """A thread a cell starts runs only while a call runs (documented: threads are state)."""
    async with attack_session(hardened) as s:
        await s.run("import threading, time\nticks = [0]\n"
                    "def tick():\n    while True:\n        ticks[0] += 1\n        time.sleep(0.005)\n"
                    "threading.Thread(target=tick, daemon=True).start()\ntime.sleep(0.1)")
        before = int((await s.run("ticks[0]"))["result"])
        time.sleep(0.5)
        after = int((await s.run("ticks[0]"))["result"])
        assert after - before < 20, f"the thread ticked {after - before} times between calls"
        resumed = int((await s.run("time.sleep(0.2)\nticks[0]"))["result"])
        assert resumed - after >= 10, "the thread did not resume during the next call"
        await s.witness_still_serves()


async def test_nothing_outlives_a_timed_out_call_or_its_sandbox(hardened):
    import anyio

    async with attack_session(hardened) as s:
        slow = await s.run("import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                           "    os.execvp('sleep', ['sleep', '4712.1'])\ntime.sleep(60)")
        assert slow["error"]["name"] == "TimeoutError"
        assert await _gone("4712.1")
        # A call still running when the sandbox goes: its processes go with it.
        async with anyio.create_task_group() as group:
            group.start_soon(s.run, "import os, time\nif os.fork() == 0:\n    os.setsid()\n"
                                    "    os.execvp('sleep', ['sleep', '4712.2'])\ntime.sleep(3)")
            deadline = time.monotonic() + 10
            while not _host_processes_with("4712.2") and time.monotonic() < deadline:
                await anyio.sleep(0.05)
            assert _host_processes_with("4712.2")
            manager = hardened._sandbox_engine.get()
            manager._discard(s.attacker)
        assert await _gone("4712.2")
        await s.witness_still_serves()


PROC_FDS = "import os\n" + sandboxes.EVERY_DESCRIPTOR + r"""
# A descriptor is inside the sandbox's view when its file is the one the sandbox sees at that path,
# or lives on the sandbox's own /tmp; names alone cannot tell (the host has a /tmp too).
private = {os.stat("/tmp").st_dev}
reached = []
for pid, fd, path in every_descriptor():
    try:
        target = os.readlink(path)
        opened = os.stat(path)
    except OSError:
        continue
    if target.startswith(("pipe:", "socket:", "anon_inode:")) or opened.st_dev in private:
        continue
    try:
        seen = os.stat(target)
        if (seen.st_dev, seen.st_ino) == (opened.st_dev, opened.st_ino):
            continue
    except OSError:
        pass
    try:
        handle = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_NONBLOCK)
        os.close(handle)
        reached.append((pid, fd, target, "writable"))
    except OSError:
        reached.append((pid, fd, target, "visible"))
print(reached)
"""


async def test_no_host_file_is_reachable_through_inherited_descriptors(hardened, tmp_path):
    """Issue: /proc/1/fd/2 was bubblewrap's stderr, a host log file the sandbox could append to."""
    async with attack_session(hardened) as s:
        found = await s.run(PROC_FDS)
        assert found["stdout"] == "[]\n", found["stdout"]
        await s.run(f"open('fds.py', 'w').write({PROC_FDS!r})")
        command = await s.command("python3 fds.py")
        assert command["stdout"] == "[]\n", command["stdout"]
        await s.witness_still_serves()


async def test_setuid_bits_never_take_effect_or_come_out(hardened, root):
    async with attack_session(hardened) as s:
        made = await s.run("import os, shutil\nshutil.copy('/bin/id', 'suid-id')\nos.chmod('suid-id', 0o6755)\n"
                           "[line.split(' - ')[0].split()[5] for line in open('/proc/self/mountinfo') "
                           "if line.split()[4] == '/home/user'][0]")
        assert "nosuid" in made["result"], made
        ran = await s.command("./suid-id -u; grep NoNewPrivs /proc/self/status")
        assert ran["stdout"].split()[0] == "1000" and "NoNewPrivs:\t1" in ran["stdout"]
        out = await s.call("download_file_from_sandbox_to_local", sandbox_file_path="suid-id")
        assert not out.is_error, out.content[0].text
        mode = (root / "out" / "suid-id").stat().st_mode & 0o7777
        assert mode == 0o644, oct(mode)
        await s.witness_still_serves()


async def test_error_messages_name_no_host_paths(hardened, monkeypatch, root, tmp_path):
    """Issue: error messages disclosed absolute host paths and temporary file names."""
    async with attack_session(hardened) as s:
        texts = []
        (root / "plain.txt").write_text("x")
        await s.run("import os\nos.mkfifo('trap')")
        texts.append((await s.call("upload_file_from_local_to_sandbox", local_file_path="plain.txt",
                                   sandbox_file_path="trap")).content[0].text)
        monkeypatch.setenv("TOOLSUITE_OUTPUT_DIR", str(root / "plain.txt" / "out"))
        texts.append((await s.call("download_file_from_sandbox_to_local", sandbox_file_path="trap")).content[0].text)
        await s.run("open('real.txt', 'w').write('x')")
        texts.append((await s.call("download_file_from_sandbox_to_local",
                                   sandbox_file_path="real.txt")).content[0].text)
        monkeypatch.setenv("TOOLSUITE_SANDBOX_PYTHON", str(tmp_path / "missing" / "python3"))
        created = await s.client.call_tool("create_sandbox", {})
        assert created.is_error
        texts.append(created.content[0].text)
        for text in texts:
            assert str(tmp_path) not in text and "/tmp/" not in text, text
        assert "could not start" in texts[-1] and "TOOLSUITE_SANDBOX_PYTHON" in texts[-1]
        await s.witness_still_serves()


FILL = """
import errno
written, failure = 0, None
chunk = b"x" * (1 << 20)
try:
    for i in range(100):
        with open(f"{folder}/fill-{{i}}", "wb") as handle:
            handle.write(chunk)
        written += 1
except OSError as exc:
    failure = errno.errorcode.get(exc.errno)
written, failure
"""


def _bytes_under(folder: Path) -> int:
    total = 0
    for directory, _dirs, names in os.walk(folder):
        for name in names:
            try:
                total += os.lstat(os.path.join(directory, name)).st_blocks * 512
            except OSError:
                continue
    return total


async def test_filling_the_disk_stops_at_the_quota(hardened, monkeypatch, root, tmp_path):
    """Writes past TOOLSUITE_SANDBOX_HOME_QUOTA_MB fail inside the sandbox with a clear note; the
    host's disk never holds them; uploads say the home is full; other sandboxes are unaffected."""
    monkeypatch.setenv("TOOLSUITE_SANDBOX_HOME_QUOTA_MB", "24")
    (root / "big.bin").write_bytes(b"y" * (8 << 20))
    async with attack_session(hardened) as s:
        home = await s.run(FILL.format(folder="/home/user"))
        written, failure = ast.literal_eval(home["result"])
        assert failure == "ENOSPC" and written <= 24, home["result"]
        assert any("full" in note for note in home["notes"]), home["notes"]
        scratch = await s.run(FILL.format(folder="/tmp"))
        written, failure = ast.literal_eval(scratch["result"])
        assert failure == "ENOSPC" and written <= 24, scratch["result"]
        assert _bytes_under(tmp_path / "sandboxes") < 2 << 20, "sandbox files reached the host's disk"
        upload = await s.call("upload_file_from_local_to_sandbox", local_file_path="big.bin")
        assert upload.is_error and "full" in upload.content[0].text, upload.content[0].text
        cleaned = await s.run("import glob, os\nfor name in glob.glob('fill-*'):\n    os.remove(name)")
        assert cleaned["error"] is None
        again = await s.call("upload_file_from_local_to_sandbox", local_file_path="big.bin")
        assert not again.is_error, again.content[0].text
        assert (await s.run("import os\nos.path.getsize('big.bin')"))["result"] == str(8 << 20)
        await s.witness_still_serves()
        assert (await s.run("open('w.bin', 'wb').write(b'z' * (4 << 20))", s.witness))["result"] == str(4 << 20)


async def test_host_files_are_not_reachable_through_proc_root_or_cwd(hardened, tmp_path):
    secret = tmp_path / "proc-secret.txt"
    secret.write_text("PROC-SECRET")
    code = (f"import os\nsecret = {str(secret)!r}\nserver = {os.getpid()}\nfound = []\n"
            "for pid in [p for p in os.listdir('/proc') if p.isdigit()] + ['self', 'thread-self', str(server)]:\n"
            "    for path in (f'/proc/{pid}/root' + secret, f'/proc/{pid}/cwd/../..' + secret,\n"
            "                 f'/proc/{pid}/root/proc/1/root' + secret):\n"
            "        try:\n            found.append(open(path).read())\n        except OSError:\n            pass\n"
            "found")
    async with attack_session(hardened) as s:
        result = await s.run(code)
        assert result["result"] == "[]", result
        shell = await s.command(f"cat /proc/*/root{secret} /proc/*/cwd/../..{secret} 2>/dev/null; true")
        assert "PROC-SECRET" not in shell["stdout"]
        await s.witness_still_serves()


async def test_unix_sockets_of_the_host_are_unreachable_including_abstract_ones(hardened, tmp_path):
    import secrets
    import socket

    path = tmp_path / "host.sock"
    named = socket.socket(socket.AF_UNIX)
    named.bind(str(path))
    named.listen()
    abstract_name = "\0toolsuite-attack-" + secrets.token_hex(4)
    abstract = socket.socket(socket.AF_UNIX)
    abstract.bind(abstract_name)
    abstract.listen()
    code = (f"import socket\nreached = []\nfor address in ({str(path)!r}, {abstract_name!r}, "
            "'/run/dbus/system_bus_socket', '/var/run/docker.sock', '\\0/tmp/.X11-unix/X0'):\n"
            "    client = socket.socket(socket.AF_UNIX)\n    client.settimeout(2)\n    try:\n"
            "        client.connect(address)\n        reached.append(address)\n    except OSError:\n        pass\n"
            "    finally:\n        client.close()\nreached")
    try:
        async with attack_session(hardened) as s:
            assert (await s.run(code))["result"] == "[]"
            await s.witness_still_serves()
    finally:
        named.close()
        abstract.close()


async def test_signals_and_ptrace_cannot_reach_the_server_or_host_processes(hardened):
    import subprocess

    bystander = subprocess.Popen(["sleep", "60"])
    try:
        code = (f"import ctypes, os, signal\nlibc = ctypes.CDLL(None, use_errno=True)\nout = {{}}\n"
                f"for name, pid, sig in (('bystander', {bystander.pid}, signal.SIGKILL), "
                f"('server', {os.getpid()}, 0)):\n"
                "    try:\n        os.kill(pid, sig)\n        out[name] = 'signalled'\n"
                "    except OSError as exc:\n        out[name] = type(exc).__name__\n"
                f"out['ptrace'] = libc.ptrace(16, {bystander.pid}, None, None)\nout")
        async with attack_session(hardened) as s:
            result = await s.run(code)
            assert "signalled" not in result["result"], result["result"]
            await s.command("kill -9 -1; kill -STOP -1; true")
            time.sleep(0.2)
            assert bystander.poll() is None, "a host process was killed from a sandbox"
            await s.witness_still_serves()
    finally:
        bystander.kill()
        bystander.wait()


async def test_another_sandboxs_files_are_out_of_reach(hardened, tmp_path):
    async with attack_session(hardened) as s:
        await s.run("open('private.txt', 'w').write('WITNESS-SECRET')", s.witness)
        base = tmp_path / "sandboxes"
        code = (f"import glob, os\nfound = []\nfor pattern in ('/proc/*/root/home/user/private.txt', "
                f"{str(base)!r} + '/*/home/private.txt', '/home/*/private.txt', '/tmp/**/private.txt'):\n"
                "    for path in glob.glob(pattern, recursive=True):\n"
                "        try:\n            found.append(open(path).read())\n        except OSError:\n            pass\n"
                "found")
        assert (await s.run(code))["result"] == "[]"
        for path in (f"../{s.witness}/home/private.txt", f"/home/user/../../{s.witness}/private.txt",
                     "/proc/1/root/home/user/private.txt"):
            result = await s.call("download_file_from_sandbox_to_local", sandbox_file_path=path)
            assert result.is_error and "WITNESS-SECRET" not in result.content[0].text
        await s.witness_still_serves()


SANDBOX_FLIPPER = """
import os, threading
open('t', 'w').write('plain')
def flip():
    while True:
        for step in range(2):
            try:
                os.remove('t')
            except OSError:
                pass
            try:
                if step:
                    os.symlink('/etc/passwd', 't')
                else:
                    open('t', 'w').write('plain')
            except OSError:
                pass
threading.Thread(target=flip, daemon=True).start()
"""


async def test_symlink_and_hardlink_races_inside_the_sandbox(hardened, root):
    """Sandboxed racers flip a name between a file and a symlink to /etc/passwd while files move in
    and out; hard links to files outside the home cannot be made."""
    (root / "real.txt").write_text("inside")
    async with attack_session(hardened) as s:
        links = await s.run("import os\nresults = []\nfor source in ('/etc/passwd', '/usr/bin/env', "
                            "'/opt/toolsuite/kernel.py'):\n    try:\n        os.link(source, f'hl-{len(results)}')\n"
                            "        results.append('linked')\n    except OSError as exc:\n"
                            "        results.append(type(exc).__name__)\nresults")
        assert "linked" not in links["result"], links["result"]
        await s.run(SANDBOX_FLIPPER)
        for _ in range(30):
            await s.command("(while :; do rm -f t; ln -s /etc/passwd t; rm -f t; echo x > t; done) & sleep 0.01")
            down = await s.call("download_file_from_sandbox_to_local", sandbox_file_path="t")
            up = await s.call("upload_file_from_local_to_sandbox", local_file_path="real.txt", sandbox_file_path="t")
            for result in (down, up):
                assert "root:x:0:0" not in result.content[0].text
        for written in (root / "out").glob("*") if (root / "out").exists() else []:
            assert "root:x:0:0" not in written.read_text(errors="replace")
        await s.witness_still_serves()


async def test_an_upload_source_swapped_for_a_symlink_is_not_followed(hardened, root, tmp_path, monkeypatch):
    """Issue 16.3 for the upload's last step: the source is checked inside the root, then swapped for
    a symlink to a file outside before it is opened. The swap is made exactly in that window (by
    wrapping the path check), so the test does not depend on winning a race. Swapped parent
    folders are for the shared opener to close."""
    from servers.python import server as server_module

    outside = tmp_path / "outside.txt"
    outside.write_text("HOST-OUTSIDE-SECRET")
    source = root / "swap.txt"
    source.write_text("inside")
    checked = server_module.resolve_local_path

    def check_then_swap(raw: str, **kwargs):
        resolved = checked(raw, **kwargs)
        source.unlink()
        source.symlink_to(outside)  # what an attacker does between the check and the open
        return resolved

    monkeypatch.setattr(server_module, "resolve_local_path", check_then_swap)
    async with attack_session(hardened) as s:
        result = await s.call("upload_file_from_local_to_sandbox", local_file_path="swap.txt",
                              sandbox_file_path="got.txt")
        assert result.is_error and "symlink" in result.content[0].text, result.content[0].text
        got = await s.run("import os\nos.path.exists('got.txt') and open('got.txt').read()")
        assert "HOST-OUTSIDE-SECRET" not in got["result"]
        await s.witness_still_serves()


async def test_path_traversal_in_every_file_argument_is_refused(hardened, root, tmp_path):
    (root / "data.txt").write_text("payload")
    before = {p for p in tmp_path.rglob("*") if "sandboxes" not in p.parts}
    async with attack_session(hardened) as s:
        await s.run("open('inside.txt', 'w').write('x')")
        for local in ("../data.txt", "/etc/passwd", "file:///etc/passwd", "file://localhost/etc/passwd",
                      f"file://{root}/%2e%2e/%2e%2e/etc/passwd", "~/.bashrc", "data.txt\x00.png"):
            result = await s.call("upload_file_from_local_to_sandbox", local_file_path=local)
            assert result.is_error, local
        for inside in ("../../etc/x", "/home/user/../../etc/x", "/etc/x", "..", "a/../../x", "/home/userx/x",
                       "/home/user/../user2/x", "x\x00y"):
            result = await s.call("upload_file_from_local_to_sandbox", local_file_path="data.txt",
                                  sandbox_file_path=inside)
            assert result.is_error, inside
            result = await s.call("download_file_from_sandbox_to_local", sandbox_file_path=inside)
            assert result.is_error, inside
        for name in ("../../escaped.txt", "/etc/cron.d/escaped", "..", ".bashrc", "a/b/../../../escaped.txt",
                     "..\\..\\escaped.txt"):
            result = await s.call("download_file_from_sandbox_to_local", sandbox_file_path="inside.txt",
                                  local_filename=name)
            if not result.is_error:
                assert "/" not in result.structured_content["local_path"].removeprefix("out/")
        after = {p for p in tmp_path.rglob("*") if "sandboxes" not in p.parts}
        assert {p for p in after - before if root / "out" not in p.parents and p != root / "out"} == set()
        assert not any(p.name.startswith(".") for p in (root / "out").iterdir())
        await s.witness_still_serves()


LOOPBACK_SPELLINGS = ("127.0.0.1", "localhost", "LOCALHOST", "localhost.", "127.1", "127.0.1", "2130706433",
                      "0x7f000001", "0x7f.0.0.1", "017700000001", "0177.0.0.1", "127.0.0.1.", "0.0.0.0", "0",
                      "[::1]", "[0:0:0:0:0:0:0:1]", "[::ffff:127.0.0.1]", "[::ffff:7f00:1]", "[::127.0.0.1]")


async def test_internet_downloads_never_reach_loopback_in_any_spelling(hardened):
    target = Site(b"internal data")
    try:
        async with attack_session(hardened) as s:
            for host in LOOPBACK_SPELLINGS:
                result = await s.call("download_file_from_internet_to_sandbox",
                                      url=f"http://{host}:{target.port}/secret.txt")
                assert result.is_error, host
            assert target.hits == 0
            await s.witness_still_serves()
    finally:
        target.close()


async def test_internet_downloads_never_follow_redirects_to_private_addresses(hardened, monkeypatch):
    inner = Site(b"internal data", host="127.0.0.2")
    hops = [f"http://127.0.0.2:{inner.port}/secret", f"http://[::1]:{inner.port}/secret",
            f"http://0x7f000002:{inner.port}/secret", f"http://2130706434:{inner.port}/secret"]
    outers = [Site(redirect=hop) for hop in hops]
    monkeypatch.setenv("TOOLSUITE_ALLOWED_HOSTS", "127.0.0.1")  # only the first hop is allowed
    try:
        async with attack_session(hardened) as s:
            for outer in outers:
                result = await s.call("download_file_from_internet_to_sandbox",
                                      url=f"http://127.0.0.1:{outer.port}/start")
                assert result.is_error, result.content[0].text
                assert outer.hits == 1
            assert inner.hits == 0
            await s.witness_still_serves()
    finally:
        for server in (inner, *outers):
            server.close()

"""Security tests of tool-python: each attack is contained and reported, and the server keeps serving
other sandboxes afterwards. These run on CI and are never skipped there (bwrap is installed by .ci/run)."""

from __future__ import annotations

import os
import socket
import time
from pathlib import Path

import anyio
import pytest

from tests import sandboxes
from tests.sandboxes import WALL, attack_session, run_code

pytestmark = pytest.mark.anyio
hardened = sandboxes.hardened  # the shared fixture


async def test_reading_etc_shadow_is_contained(hardened):
    async with attack_session(hardened) as s:
        data = await s.run("open('/etc/shadow').read()")
        listing = await s.run("import os\nsorted(os.listdir('/etc'))")
        assert data["error"]["name"] in {"FileNotFoundError", "PermissionError"}
        assert "shadow" not in listing["result"]
        await s.witness_still_serves()


async def test_the_hosts_home_and_other_host_files_are_invisible(hardened, tmp_path: Path):
    secret = tmp_path / "host-secret.txt"
    secret.write_text("top secret")
    async with attack_session(hardened) as s:
        direct = await s.run(f"open({str(secret)!r}).read()")
        home = await s.run("import os\nsorted(os.listdir(os.path.expanduser('~')))")
        roots = await s.run("import os\n[p for p in ('/root/.ssh', '/home', '/var', '/srv', '/mnt') "
                            "if os.path.exists(p) and os.listdir(p)]")
        assert direct["error"]["name"] == "FileNotFoundError"
        assert home["result"] == "[]"
        assert roots["result"] in ("['/home']", "[]")
        await s.witness_still_serves()


async def test_the_servers_environment_does_not_reach_sandboxed_code(hardened):
    async with attack_session(hardened) as s:
        env = await s.run("import os\ndict(os.environ)")
        procs = await s.run(
            "import os\nleaks = []\nfor pid in os.listdir('/proc'):\n    if pid.isdigit():\n"
            "        try:\n            leaks.append(open(f'/proc/{pid}/environ', 'rb').read())\n"
            "        except OSError:\n            pass\nb''.join(leaks)")
        for text in (env["result"], procs["result"]):
            assert "sk-host-secret" not in text and "sk-openai-secret" not in text
            assert "TOOLSUITE_ROOTS" not in text
        await s.witness_still_serves()


async def test_writing_outside_the_home_is_refused(hardened, tmp_path: Path):
    async with attack_session(hardened) as s:
        system = await s.run("open('/usr/evil.txt', 'w').write('x')")
        etc = await s.run("open('/etc/evil.txt', 'w').write('x')")
        private_tmp = await s.run("open('/tmp/sandbox-marker-file', 'w').write('x')")
        assert system["error"]["name"] in {"OSError", "PermissionError"}
        assert etc["error"]["name"] in {"OSError", "PermissionError", "FileNotFoundError"}
        assert private_tmp["error"] is None
        assert not Path("/usr/evil.txt").exists() and not Path("/tmp/sandbox-marker-file").exists()
        await s.witness_still_serves()


async def test_sockets_to_localhost_and_the_network_are_refused(hardened):
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    port = listener.getsockname()[1]
    try:
        async with attack_session(hardened) as s:
            local = await s.run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2)")
            interfaces = await s.run("import socket\n[name for _, name in socket.if_nameindex()]")
            resolve = await s.run("import socket\nsocket.getaddrinfo('pypi.org', 443)")
            assert local["error"] is not None and local["error"]["name"] in {"ConnectionRefusedError", "OSError",
                                                                                "TimeoutError"}
            assert interfaces["result"] == "['lo']"
            assert resolve["error"] is not None
            await s.witness_still_serves()
    finally:
        listener.close()


async def test_a_fork_bomb_is_contained(hardened):
    async with attack_session(hardened) as s:
        started = time.monotonic()
        bomb = await s.run("import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass")
        assert time.monotonic() - started < WALL + 15
        assert bomb["error"] is not None
        after = await s.run("'alive'")
        assert after["result"] == "'alive'" and after["state_lost"] is True
        await s.witness_still_serves()


async def test_allocating_10_gb_is_contained(hardened):
    async with attack_session(hardened) as s:
        huge = await s.run("x = bytearray(10 * 1024 ** 3)")
        assert huge["error"]["name"] == "MemoryError"
        # Past the memory budget but inside the address-space limit: the memory cgroup (or the
        # address-space limit where cgroups are unavailable) stops it.
        big = await s.run("x = bytearray(700 * 1024 ** 2)\nlen(x)")
        assert big["error"] is not None and big["result"] is None
        assert (await s.run("1 + 1"))["result"] == "2"
        await s.witness_still_serves()


async def test_an_infinite_loop_is_stopped(hardened):
    async with attack_session(hardened) as s:
        started = time.monotonic()
        loop = await s.run("while True:\n    pass")
        assert time.monotonic() - started < WALL + 10
        assert loop["error"]["name"] in {"CpuLimitExceeded", "TimeoutError"}
        await s.witness_still_serves()


async def test_printing_a_gigabyte_is_capped(hardened):
    async with attack_session(hardened) as s:
        flood = await s.run("chunk = 'x' * 1_000_000\nfor _ in range(1000):\n    print(chunk)")
        assert len(flood["stdout"]) <= 50_000
        assert flood["stdout_chars_dropped"] > 0 or flood["error"] is not None
        shell = await s.command("head -c 100000000 /dev/zero | tr '\\0' 'y'")
        assert len(shell["stdout"]) <= 50_000 and shell["stdout_chars_dropped"] > 0
        await s.witness_still_serves()


async def test_sleeping_past_the_wall_limit_is_killed_and_reported(hardened):
    async with attack_session(hardened) as s:
        await s.run("kept = 'state'")
        started = time.monotonic()
        slow = await s.run("import time\ntime.sleep(60)")
        assert time.monotonic() - started < WALL + 5
        assert slow["error"]["name"] == "TimeoutError" and "wall-clock limit" in " ".join(slow["notes"])
        lost = await s.run("'kept' in globals()")
        assert lost["result"] == "False" and lost["state_lost"] and "fresh interpreter" in lost["notes"][0]
        await s.witness_still_serves()


async def test_killing_the_supervisor_is_ignored_and_killing_the_interpreter_is_reported(hardened):
    async with attack_session(hardened) as s:
        # The supervisor is the sandbox's process 1: SIGKILL and SIGSTOP from inside never reach it.
        killed = await s.run("import os, signal, time\nkept = 1\nfor sig in (signal.SIGSTOP, signal.SIGKILL):\n"
                             "    os.kill(os.getppid(), sig)\n    os.kill(1, sig)\ntime.sleep(0.3)\n'alive'")
        assert killed["error"] is None and killed["result"] == "'alive'"
        assert (await s.run("kept"))["result"] == "1"
        again = await s.run("import os\nos.kill(os.getpid(), 9)")
        assert again["error"]["name"] == "KernelDied" and "SIGKILL" in again["error"]["value"]
        back = await s.run("'back'")
        assert back["result"] == "'back'" and back["state_lost"] is True
        await s.witness_still_serves()


async def test_symlink_tricks_in_upload_and_download_are_refused(hardened, root: Path, tmp_path: Path):
    (root / "data.txt").write_text("payload")
    outside = tmp_path / "outside-secret.txt"
    outside.write_text("secret")
    os.symlink(outside, root / "link-to-outside.txt")
    async with attack_session(hardened) as s:
        await s.run(f"import os\nos.symlink('/etc', 'etc_link')\nos.symlink({str(outside)!r}, 'leak')\n"
                    "os.symlink('/home/user/real', 'dir_link')\nos.mkdir('real')")
        calls = [
            ("upload_file_from_local_to_sandbox", {"local_file_path": "data.txt", "sandbox_file_path": "etc_link/x"}),
            ("upload_file_from_local_to_sandbox", {"local_file_path": "data.txt",
                                                   "sandbox_file_path": "/home/user/dir_link/x"}),
            ("upload_file_from_local_to_sandbox", {"local_file_path": "data.txt", "sandbox_file_path": "leak"}),
            ("upload_file_from_local_to_sandbox", {"local_file_path": "link-to-outside.txt"}),
            ("upload_file_from_local_to_sandbox", {"local_file_path": "data.txt",
                                                   "sandbox_file_path": "/home/user/../../etc/x"}),
            ("download_file_from_sandbox_to_local", {"sandbox_file_path": "leak"}),
            ("download_file_from_sandbox_to_local", {"sandbox_file_path": "etc_link/passwd"}),
            ("download_file_from_sandbox_to_local", {"sandbox_file_path": "/etc/hostname"}),
        ]
        for tool, arguments in calls:
            result = await s.call(tool, **arguments)
            assert result.is_error, (tool, arguments, result.content[0].text)
            assert "secret" not in result.content[0].text
        assert outside.read_text() == "secret"
        assert not (root / "out").exists() or not any((root / "out").iterdir())
        await s.witness_still_serves()


async def test_guessing_another_sandboxes_id_fails(hardened):
    async with attack_session(hardened) as s:
        for guess in (s.witness[:-1] + ("A" if s.witness[-1] != "A" else "B"), "sbx_", s.witness.upper(), "../x"):
            result = await run_code(s.client, guess, "1")
            assert result.is_error and "no such sandbox" in result.content[0].text
        assert s.attacker != s.witness and len(s.attacker) >= 24
        await s.witness_still_serves()


async def test_a_sandbox_id_is_useless_after_expiry(hardened):
    async with attack_session(hardened) as s:
        manager = hardened._sandbox_engine.get()
        expiring = manager.get(s.attacker)
        home = expiring.root
        expiring.idle_timeout = 0.5
        await anyio.sleep(1.0)
        result = await run_code(s.client, s.attacker, "1")
        assert result.is_error and "expired" in result.content[0].text
        assert not home.exists()
        await s.witness_still_serves()

"""Local sandboxes: a bubblewrap sandbox with a supervisor and a Python interpreter each, limits, expiry.

Knows nothing about MCP or sockets. One `SandboxManager` owns every sandbox of the sandbox service
(`daemon.py`, which servers reach through `client.py`): it creates them (unguessable ids, a
size-capped private home at /home/user that the host reaches through the sandbox's /proc root),
sends each call to the sandbox's supervisor (`kernel.py`) and checks its reply, ends the whole
sandbox when the supervisor stops answering, restarts it on the next call (saying what was lost),
moves files in and out through descriptors, and removes idle sandboxes with their files. The
bubblewrap command line is in `bwrap.py`; paths inside the home are walked by `files.py`.
"""

from __future__ import annotations

import atexit
import contextlib
import errno
import json
import logging
import os
import re
import secrets
import select
import shutil
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from servers.python import bwrap, files, keyrings, protocol, runtime, spawner, syscall_filter
from servers.python.config import SandboxConfig
from servers.python.limits import CgroupSet, apply_rlimits, create_cgroups
from servers.python.lost import LostSandboxes
from servers.python.results import CodeResult, CommandResult, SandboxError, SandboxInfo
from shared import settings
from shared.errors import InputError, NotConfigured

log = logging.getLogger("toolsuite.sandbox")

# Off only in bench/python_sandbox.py, which measures what the syscall filter costs per call.
USE_SYSCALL_FILTER = True
# How long past its own wall-clock limit the supervisor may take to answer before the server
# kills the whole sandbox (it needs a moment to kill and reap what a call left running).
BACKSTOP_SECONDS = 15.0
START_TIMEOUT = 30.0
ID_PREFIX = "sbx_"


_ABSOLUTE_PATH = re.compile(r"(?<![\w.])/[^\s'\":,;()]+")


def scrub_host_paths(text: str) -> str:
    """`text` with absolute paths other than the sandbox's home replaced (messages must not show
    where the server keeps its sandboxes, its Python or its temporary files)."""
    def keep_home(match: re.Match[str]) -> str:
        path = match.group(0)
        return path if path == files.SANDBOX_HOME or path.startswith(files.SANDBOX_HOME + "/") else "<host path>"

    return _ABSOLUTE_PATH.sub(keep_home, text)


def _seccomp_program() -> bytes:
    reason = syscall_filter.unavailable_reason()
    if reason:
        raise NotConfigured(reason)
    return syscall_filter.program()


class Sandbox:
    def __init__(self, sandbox_id: str, base: Path, idle_timeout: float, config: SandboxConfig) -> None:
        self.id = sandbox_id
        self.root = base / sandbox_id
        self.idle_timeout = idle_timeout
        self.config = config
        self.limits = config.limits
        self.last_used = time.monotonic()
        self.lock = threading.Lock()
        self.process: subprocess.Popen[bytes] | None = None
        self.cgroups = CgroupSet()
        self.kernel_starts = 0
        self.death_note: str | None = None
        self._replies: protocol.LineReader | None = None
        self._stderr_tail = b""
        # The supervisor as the host sees it: the home tmpfs is reached through its /proc root.
        self._pid1: int | None = None
        self._pid1fd: int | None = None
        self.mode = config.isolation
        self._bwrap = bwrap.require_bwrap(config.bwrap) if self.mode == "bwrap" else ""
        # The home is a size-capped tmpfs inside the sandbox (the quota); only an old bubblewrap
        # without --size, or the process mode, keeps it in a host folder.
        self.home_on_host = self.mode == "process" or not bwrap.home_is_tmpfs(self._bwrap)
        self.home = self.root / "home"
        self.root.mkdir(mode=0o700)
        self.home.mkdir(mode=0o755)
        (self.root / "etc").mkdir()
        (self.root / "etc" / "passwd").write_text(
            f"user:x:{bwrap.SANDBOX_UID}:{bwrap.SANDBOX_UID}::/home/user:/bin/sh\n")
        (self.root / "etc" / "group").write_text(f"user:x:{bwrap.SANDBOX_UID}:\n")

    # -- process lifecycle ------------------------------------------------------------------------

    def _start(self) -> None:
        if self.mode == "process":
            self._spawn([self.config.python, str(bwrap.KERNEL_SOURCE)], ())
            return
        layout = bwrap.Layout(root=self.root, host_home=self.home if self.home_on_host else None,
                              quota_bytes=self.limits.home_quota_mb * 2**20, output_chars=self.limits.output_chars,
                              python=self.config.python, network=self.config.network)
        seccomp_fd = None
        if USE_SYSCALL_FILTER:
            program = _seccomp_program()
            # bwrap reads the program from a descriptor; a memfd holds it without touching disk.
            seccomp_fd = os.memfd_create("toolsuite-seccomp", os.MFD_CLOEXEC)
            os.write(seccomp_fd, program)
            os.lseek(seccomp_fd, 0, os.SEEK_SET)
        info_read, info_write = os.pipe()
        passed = (info_write,) if seccomp_fd is None else (info_write, seccomp_fd)
        try:
            self._spawn(bwrap.command(self._bwrap, layout, seccomp_fd, info_write), passed, info_read)
        finally:
            os.close(info_read)

    def _spawn(self, command: list[str], pass_fds: tuple[int, ...], info_read: int | None = None) -> None:
        """Start the supervisor; `pass_fds` go to the child and are closed here, whatever happens."""
        self.cgroups.remove()
        self.cgroups = create_cgroups(f"toolsuite-{self.id}-{self.kernel_starts}", self.limits, self.config.cgroups)
        cgroups, limits = self.cgroups, self.limits
        join_fresh_keyring = keyrings.fresh_session_joiner()

        def prepare_child() -> None:
            cgroups.join()
            apply_rlimits(limits)
            join_fresh_keyring()

        env = {"PATH": "/usr/bin:/bin"}  # bwrap itself must not carry the server's secrets either
        if self.mode == "process":
            env = {**bwrap.sandbox_env(str(self.home)), "KERNEL_OUTPUT_LIMIT": str(self.limits.output_chars)}
        # bwrap's stderr (and so the supervisor's) is a pipe the server reads, never a host file that
        # sandboxed code could reach through /proc/1/fd/2.
        try:
            # From the spawner's thread: bubblewrap's --die-with-parent follows the thread that starts it.
            self.process = spawner.run(lambda: subprocess.Popen(
                command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
                cwd=str(self.home), start_new_session=True, preexec_fn=prepare_child, close_fds=True,
                pass_fds=pass_fds,
            ))
        finally:
            for fd in pass_fds:  # the child has its copies; ours would keep the info pipe from ending
                os.close(fd)
        assert self.process.stderr is not None
        os.set_blocking(self.process.stderr.fileno(), False)
        self._stderr_tail = b""
        self.kernel_starts += 1
        assert self.process.stdout is not None
        self._replies = protocol.LineReader(self.process.stdout.fileno(), protocol.reply_cap(self.limits.output_chars)
                                            + 2**20)
        try:
            ready = self._read_reply(time.monotonic() + START_TIMEOUT, None)
        except (TimeoutError, protocol.LineTooLong):
            ready = None
        if ready is not None and ready.get("ready") and info_read is not None:
            ready = ready if self._learn_pid1(info_read) else None
        if ready is None or not ready.get("ready"):
            detail = self._stderr_last_line()
            self._kill()
            if detail:
                log.warning("sandbox %s did not start: %s", self.id[:10], detail)
            raise SandboxError("the sandbox could not start its Python interpreter"
                               + (f": {scrub_host_paths(detail)}" if detail else "")
                               + " (TOOLSUITE_SANDBOX_PYTHON must be a Python that runs inside the sandbox)")

    def _learn_pid1(self, info_read: int) -> bool:
        """bwrap's --info-fd names the sandbox's process 1 in the host's pid namespace; a pidfd on it
        tells later whether /proc/<pid> still is that process (pids are reused)."""
        data = b""
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline:
            if select.select([info_read], [], [], max(0.0, deadline - time.monotonic()))[0]:
                chunk = os.read(info_read, 4096)
                if not chunk:
                    break
                data += chunk
                with contextlib.suppress(ValueError):
                    pid = int(json.loads(data)["child-pid"])
                    self._pid1, self._pid1fd = pid, os.pidfd_open(pid)
                    return True
        log.warning("sandbox %s: bubblewrap did not report its process", self.id[:10])
        return False

    @contextlib.contextmanager
    def open_home(self) -> Iterator[int]:
        """A descriptor for /home/user, valid only while the sandbox that owns it runs."""
        if self.home_on_host:
            fd = os.open(self.home, files.DIRECTORY_FLAGS)
        else:
            if self._pid1 is None or self._pid1fd is None or not self.alive():
                raise SandboxError("the sandbox is not running; run a command or code to start it again")
            try:
                fd = os.open(f"/proc/{self._pid1}/root{files.SANDBOX_HOME}", files.DIRECTORY_FLAGS)
            except OSError:
                raise SandboxError("the sandbox stopped while its home was being opened; try again") from None
            if select.select([self._pid1fd], [], [], 0)[0]:  # it ended: the pid may be another process now
                os.close(fd)
                raise SandboxError("the sandbox stopped while its home was being opened; try again")
        try:
            yield fd
        finally:
            os.close(fd)

    def _stderr_last_line(self) -> str:
        """The last line bwrap or the supervisor wrote to stderr (read without blocking, last 4 KB kept)."""
        stream = self.process.stderr if self.process is not None else None
        if stream is not None:
            with contextlib.suppress(OSError):
                while chunk := os.read(stream.fileno(), 65536):
                    self._stderr_tail = (self._stderr_tail + chunk)[-4096:]
        lines = self._stderr_tail.decode(errors="replace").strip().splitlines()
        return lines[-1][:300] if lines else ""

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def info(self) -> SandboxInfo:
        return SandboxInfo(self.id, self.mode, self.config.network, self.limits.describe(),
                           list(self.cgroups.active))

    def _kill(self) -> None:
        process = self.process
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            for stream in (process.stdin, process.stdout, process.stderr):
                with contextlib.suppress(OSError):
                    stream and stream.close()
        if self._pid1fd is not None:
            os.close(self._pid1fd)
        self._pid1 = self._pid1fd = None
        self.cgroups.kill_all()
        self.process = None

    def destroy(self) -> None:
        self._kill()
        self.cgroups.remove()
        shutil.rmtree(self.root, ignore_errors=True)

    def _describe_death(self) -> str:
        code = self.process.returncode if self.process is not None else None
        if code is not None and code < 0:
            name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
            hint = " (probably the memory limit)" if -code == signal.SIGKILL else ""
            return f"the sandbox was killed by {name}{hint}"
        if code is not None:
            return f"the sandbox exited with code {code}"
        return "the sandbox stopped"

    # -- requests ---------------------------------------------------------------------------------

    def _read_reply(self, deadline: float, request_id: str | None) -> dict[str, Any] | None:
        """The supervisor's reply to `request_id` (None: its ready line), or None at end of file.

        Raises TimeoutError past the deadline and protocol.LineTooLong past the size cap.
        """
        assert self._replies is not None
        reply = protocol.read_reply(self._replies, deadline, request_id)
        return reply if isinstance(reply, dict) else None

    def _ensure_kernel(self, notes: list[str]) -> bool:
        """Start the sandbox if needed; True when earlier state was lost."""
        if self.alive():
            return False
        lost = self.kernel_starts > 0
        if lost:
            reason = self.death_note or self._describe_death()
            files_note = "files in /home/user remain" if self.home_on_host else "so are the files in /home/user"
            notes.append(f"{reason}; this call ran in a fresh sandbox: variables and imports from earlier calls "
                         f"are gone, {files_note}")
            self.death_note = None
        self._start()
        return lost

    def _exchange(self, request: dict[str, Any], wall_seconds: float) -> dict[str, Any] | None:
        """Send one request and wait for its reply; None when the sandbox had to be ended (the
        reason is in `death_note` for the next call)."""
        process = self.process  # another thread may end the sandbox (deleted, expired) while this waits
        assert process is not None and process.stdin is not None
        request_id = secrets.token_hex(16)  # never reaches user code: only the supervisor sees it
        try:
            process.stdin.write((json.dumps({**request, "id": request_id}) + "\n").encode())
            process.stdin.flush()
        except (BrokenPipeError, OSError):
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            self.death_note = f"the previous call ended the sandbox ({self._describe_death()})"
            return None
        try:
            reply = self._read_reply(time.monotonic() + wall_seconds + BACKSTOP_SECONDS, request_id)
        except TimeoutError:
            self._kill()
            self.death_note = (f"the previous call passed the {wall_seconds:.0f} s wall-clock limit and the "
                               "sandbox did not answer, so it was ended")
            return None
        except protocol.LineTooLong:
            self._kill()
            self.death_note = "the sandbox sent a reply larger than allowed and was ended"
            return None
        except OSError:
            if self.process is process:
                raise
            self.death_note = "the sandbox was closed while this code ran"  # its reply pipe went with it
            return None
        if reply is None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(5)
            self.death_note = f"the previous call ended the sandbox ({self._describe_death()})"
        return reply

    def home_usage(self) -> tuple[int, int] | None:
        """(bytes used, bytes in all) of the home tmpfs; None when the home has no quota."""
        if self.home_on_host or not self.alive():
            return None
        try:
            with self.open_home() as home:
                info = os.fstatvfs(home)
        except (SandboxError, OSError):
            return None
        return (info.f_blocks - info.f_bfree) * info.f_frsize, info.f_blocks * info.f_frsize

    def full_message(self) -> str:
        return (f"/home/user is full: it holds at most {self.limits.home_quota_mb} MB "
                "(TOOLSUITE_SANDBOX_HOME_QUOTA_MB); delete files there, writes fail with 'No space left on "
                "device' until then")

    def _quota_note(self) -> str | None:
        usage = self.home_usage()
        if usage is not None and usage[1] and usage[0] >= usage[1] - max(usage[1] // 100, 1 << 20):
            return self.full_message()
        return None

    def run_code(self, code: str) -> CodeResult:
        notes: list[str] = []
        lost = self._ensure_kernel(notes)
        wall = self.limits.wall_seconds_per_call
        reply = self._exchange({"kind": "code", "code": code, "cpu_seconds": self.limits.cpu_seconds_per_call,
                                "wall_seconds": wall}, wall)
        if reply is None:
            death = self.death_note or "the sandbox stopped"
            return CodeResult(error={"name": "KernelDied", "value": death, "traceback": ""},
                              notes=[*notes, f"{death} while running this code; the next call starts a fresh "
                                     "sandbox"], state_lost=lost)
        if reply.get("failed"):
            raise SandboxError(scrub_host_paths(str(reply["failed"])[:500]))
        if reply.get("state_lost"):
            lost = True
            reason = str(reply.get("lost_reason") or "the interpreter stopped")[:500]
            notes.append(f"{reason}; this call ran in a fresh interpreter: variables and imports from "
                         "earlier calls are gone (files in /home/user remain)")
        if reply.get("timed_out"):
            return CodeResult(error={"name": "TimeoutError", "value": f"execution exceeded {wall} s",
                                     "traceback": ""},
                              notes=[*notes, f"the code ran past the {wall} s wall-clock limit; all its processes "
                                     "were killed and the next call starts a fresh interpreter (files remain)"],
                              seconds=float(wall), state_lost=lost)
        if reply.get("died"):
            death = str(reply["died"])[:500]
            return CodeResult(error={"name": "KernelDied", "value": death, "traceback": ""},
                              notes=[*notes, f"{death} while running this code; the next call starts a fresh "
                                     "interpreter (files in /home/user remain)"], state_lost=lost)
        # The supervisor already rebuilt the reply; checking again keeps the server safe from a
        # supervisor that misbehaves.
        clean = protocol.clean_code_reply(reply, self.limits.output_chars)
        result = CodeResult(
            stdout=clean["stdout"], stderr=clean["stderr"], stdout_dropped=clean["stdout_dropped"],
            stderr_dropped=clean["stderr_dropped"], result=clean["result"], error=clean["error"],
            images=clean["images"], seconds=clean["seconds"], notes=notes, state_lost=lost,
        )
        if clean["images_made"] > len(clean["images"]):
            result.notes.append(f"{clean['images_made']} figures were made; {len(clean['images'])} are returned "
                                f"(at most {protocol.MAX_IMAGES}, each under {protocol.IMAGE_CHARS // 2**20} MB "
                                "encoded)")
        if quota := self._quota_note():
            result.notes.append(quota)
        return result

    def run_command(self, command: str) -> CommandResult:
        notes: list[str] = []
        self._ensure_kernel(notes)
        wall = self.limits.wall_seconds_per_call
        reply = self._exchange({"kind": "command", "command": command, "wall_seconds": wall}, wall)
        if reply is None:
            return CommandResult(exit_code=None, notes=[*notes, f"{self.death_note or 'the sandbox stopped'} while "
                                                        "the command ran"])
        clean = protocol.clean_command_reply(reply, self.limits.output_chars)
        result = CommandResult(
            exit_code=clean["exit_code"], stdout=clean["stdout"], stderr=clean["stderr"],
            stdout_dropped=clean["stdout_dropped"], stderr_dropped=clean["stderr_dropped"],
            timed_out=clean["timed_out"], seconds=clean["seconds"], notes=notes,
        )
        if clean["timed_out"]:
            result.notes.append(f"the command ran past the {wall} s limit and was killed")
        if quota := self._quota_note():
            result.notes.append(quota)
        return result


class SandboxManager:
    """Every sandbox of one sandbox service (or of one process that uses sandboxes directly)."""

    def __init__(self, base: Path | None = None, reap_interval: float = 5.0,
                 lost: LostSandboxes | None = None) -> None:
        if base is None:
            # Used directly (tests, benchmarks): the configured folder, checked as the service checks it.
            base = runtime.base_folder()
            os.close(runtime.open_private_folder(base))
        self.base = base
        self.lost = lost
        self.max_sandboxes = int(settings.number("TOOLSUITE_SANDBOX_MAX", 16, minimum=1))
        self._sandboxes: dict[str, Sandbox] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reaper = threading.Thread(target=self._reap_loop, args=(reap_interval,), daemon=True,
                                        name="sandbox-reaper")
        self._reaper.start()
        atexit.register(self.shutdown)

    # -- lifecycle --------------------------------------------------------------------------------

    def count(self) -> int:
        with self._lock:
            return len(self._sandboxes)

    def ids(self) -> list[str]:
        with self._lock:
            return list(self._sandboxes)

    def create(self, idle_timeout: float, config: SandboxConfig | None = None) -> Sandbox:
        """A new sandbox made to `config` (default: this process's settings)."""
        config = config or SandboxConfig.from_settings()
        self.reap()
        with self._lock:
            if len(self._sandboxes) >= self.max_sandboxes:
                raise SandboxError(
                    f"{len(self._sandboxes)} sandboxes are live, the limit (TOOLSUITE_SANDBOX_MAX); reuse one "
                    "or wait for idle ones to expire"
                )
            sandbox_id = ID_PREFIX + secrets.token_urlsafe(18)
            sandbox = Sandbox(sandbox_id, self.base, idle_timeout, config)
            self._sandboxes[sandbox_id] = sandbox
        try:
            with sandbox.lock:
                sandbox._start()
        except BaseException:
            self._discard(sandbox_id)
            raise
        return sandbox

    def get(self, sandbox_id: str) -> Sandbox:
        self.reap()
        key = sandbox_id.strip()
        with self._lock:
            sandbox = self._sandboxes.get(key)
        if sandbox is None:
            if self.lost is not None and self.lost.knows(key):
                raise InputError(
                    "this sandbox was lost: the sandbox service that ran it stopped before the sandbox expired "
                    "(it was stopped, killed or crashed), which ended the sandbox with its variables and files; "
                    "create a new one with create_sandbox"
                )
            raise InputError(
                "no such sandbox: it never existed or expired after being idle past its timeout (its files "
                "were removed); create a new one with create_sandbox"
            )
        sandbox.last_used = time.monotonic()
        return sandbox

    def set_timeout(self, sandbox_id: str, idle_timeout: float) -> None:
        """A new idle timeout, counted from now."""
        self.get(sandbox_id).idle_timeout = idle_timeout

    def remove(self, sandbox_id: str) -> None:
        """End the sandbox now (a call running in it ends too) and delete its files."""
        with self._lock:
            sandbox = self._sandboxes.pop(sandbox_id, None)
        if sandbox is not None:
            sandbox.destroy()

    _discard = remove

    def reap(self) -> None:
        now = time.monotonic()
        with self._lock:
            expired = [s for s in self._sandboxes.values()
                       if now - s.last_used > s.idle_timeout and not s.lock.locked()]
        for sandbox in expired:
            log.info("sandbox %s expired after %.0f s idle", sandbox.id[:10], sandbox.idle_timeout)
            self.remove(sandbox.id)

    def _reap_loop(self, interval: float) -> None:
        while not self._stop.wait(interval):
            with contextlib.suppress(Exception):
                self.reap()

    def shutdown(self) -> None:
        self._stop.set()
        with self._lock:
            ids = list(self._sandboxes)
        for sandbox_id in ids:
            self.remove(sandbox_id)

    # -- work -------------------------------------------------------------------------------------

    @contextlib.contextmanager
    def _in_use(self, sandbox: Sandbox) -> Iterator[None]:
        """One call at a time in a sandbox; its idle time counts from the end of the call."""
        if not sandbox.lock.acquire(timeout=sandbox.limits.wall_seconds_per_call + 30):
            raise SandboxError("the sandbox is busy with another call; try again when it finishes")
        try:
            yield
        finally:
            sandbox.last_used = time.monotonic()
            sandbox.lock.release()

    def run_code(self, sandbox_id: str, code: str) -> CodeResult:
        sandbox = self.get(sandbox_id)
        with self._in_use(sandbox):
            return sandbox.run_code(code)

    def run_command(self, sandbox_id: str, command: str) -> CommandResult:
        sandbox = self.get(sandbox_id)
        with self._in_use(sandbox):
            return sandbox.run_command(command)

    def put_file(self, sandbox_id: str, source: int, sandbox_path: str, name_hint: str,
                 max_bytes: int) -> tuple[str, int]:
        """Copy the open host file `source` (the caller opened it, checked and closes it) into the
        sandbox; returns (its path inside the sandbox, bytes)."""
        sandbox = self.get(sandbox_id)
        parts = files.sandbox_relative(sandbox_path)
        files.check_regular(source, max_bytes)
        with self._in_use(sandbox):
            sandbox._ensure_kernel([])  # the home lives as long as the sandbox runs
            with sandbox.open_home() as home:
                if not parts or files.is_dir_in_home(home, parts) or sandbox_path.endswith("/"):
                    parts = [*parts, files.plain_name(name_hint)]
                try:
                    written = files.write_into_home(home, parts, source, max_bytes)
                except OSError as exc:  # raw OS errors name host paths; this says what failed
                    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
                        raise SandboxError(f"the upload did not fit: {sandbox.full_message()}") from None
                    raise SandboxError(f"could not write /home/user/{'/'.join(parts)} ({exc.strerror})") from None
        return files.SANDBOX_HOME + "/" + "/".join(parts), written

    def open_file(self, sandbox_id: str, sandbox_path: str, max_bytes: int) -> int:
        """A read descriptor for a regular file in the sandbox home (the caller closes it): never a
        symlink, FIFO or device, never over `max_bytes`."""
        sandbox = self.get(sandbox_id)
        parts = files.sandbox_relative(sandbox_path)
        with self._in_use(sandbox):
            try:
                with sandbox.open_home() as home:
                    return files.open_regular_in_home(home, parts, max_bytes)
            except OSError as exc:
                raise SandboxError(f"could not read /home/user/{'/'.join(parts)} ({exc.strerror})") from None

"""The sandbox's supervisor: the only process inside a sandbox that talks to the server.

Standard library only; bound read-only into the sandbox with `protocol.py` and `interpreter.py`.
It runs no user code. It holds the server's channel (descriptors 3 and 4, moved from stdin and
stdout at start) and starts the notebook interpreter as a child with pipes of its own, so user
code can neither write to the server's channel nor learn the per-request ids the server checks.
In a bubblewrap sandbox it is process 1 of the sandbox's pid namespace: signals from sandboxed
code (SIGKILL and SIGSTOP included) are not delivered to it, it is not dumpable (no ptrace, no
/proc/1/fd, no /proc/1/mem for sandboxed code), and when it exits every process of the sandbox
ends with it.

Between calls nothing in the sandbox runs: when a call ends, every process except the supervisor
and the interpreter is killed (whatever a command or a cell started, including what detached with
setsid, nohup or a double fork), and the interpreter is stopped (SIGSTOP) until the next cell.
"""

import contextlib
import ctypes
import json
import os
import secrets
import select
import selectors
import signal
import subprocess
import sys
import time

import protocol

REQUESTS_FD = 3
REPLIES_FD = 4
HERE = os.path.dirname(os.path.abspath(__file__))
START_TIMEOUT = 30.0
PR_SET_DUMPABLE = 4


def _not_dumpable():
    """Sandboxed code runs as the same user: being non-dumpable is what keeps it out of our /proc
    entries (fds, memory) and stops ptrace, even without the syscall filter."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)


def _raise_oom_score():
    # Runs in a command's child before exec: the memory limit takes user processes first.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as adjust:
        adjust.write("1000")


def _write_all(fd, data, deadline):
    view = memoryview(data)
    with selectors.DefaultSelector() as selector:
        selector.register(fd, selectors.EVENT_WRITE)
        while view:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError
            if not selector.select(min(remaining, 1.0)):
                continue
            try:
                view = view[os.write(fd, view[:1 << 16]):]
            except BlockingIOError:
                continue


def _describe_exit(status):
    """A sentence for a wait status (os.waitstatus_to_exitcode form: negative = signal)."""
    if status is None:
        return "the Python process stopped"
    if status < 0:
        number = -status
        name = signal.Signals(number).name if number in signal.Signals._value2member_map_ else str(number)
        hint = " (probably the memory limit)" if number == signal.SIGKILL else ""
        return f"the Python process was killed by {name}{hint}"
    return f"the Python process exited with code {status}"


class Interpreter:
    """The notebook interpreter child: started, fed one cell at a time, paused between cells."""

    def __init__(self, python, output_limit):
        self.python = python
        self.output_limit = output_limit
        self.process = None
        self.pidfd = None
        self.requests = None
        self.replies = None
        self.exited = False
        self.status = None  # exit code once it ended (negative: killed by that signal), None if unknown
        self.starts = 0

    @property
    def pid(self):
        return self.process.pid if self.process is not None else None

    def alive(self):
        return self.process is not None and not self.exited

    def start(self):
        request_read, request_write = os.pipe()
        reply_read, reply_write = os.pipe()
        try:
            self.process = subprocess.Popen(
                [self.python, os.path.join(HERE, "interpreter.py"), str(request_read), str(reply_write)],
                pass_fds=(request_read, reply_write), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                cwd=os.environ.get("HOME", "/"))
        finally:
            os.close(request_read)
            os.close(reply_write)
        self.exited = False
        self.status = None
        self.starts += 1
        self.pidfd = os.pidfd_open(self.process.pid)
        self.requests = request_write
        os.set_blocking(request_write, False)  # writes wait in select with the call's deadline
        self.replies = protocol.LineReader(reply_read, protocol.reply_cap(self.output_limit))
        ready = self.read(time.monotonic() + START_TIMEOUT, "ready")
        if ready is None:
            self.kill()
            raise RuntimeError("the Python interpreter did not start")

    def read(self, deadline, cell):
        """The reply to `cell`, or None when the interpreter ended first.

        User code shares this process's pipe, so it can write lines of its own: a line without the
        cell's nonce is skipped, and a nonce is only ever good for the cell it was made for.
        """
        got = protocol.read_reply(self.replies, deadline, cell, key="cell", watch=(self.pidfd,))
        if isinstance(got, dict):
            return got
        self.reap(block=True)
        return None

    def reap(self, block=False):
        if not self.alive():
            return
        try:
            pid, status = os.waitpid(self.process.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:
            self.ended(None)
            return
        if pid:
            self.ended(os.waitstatus_to_exitcode(status))

    def ended(self, code):
        self.exited = True
        self.status = code
        self.process.returncode = code
        self.close()

    def kill(self):
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGKILL)
            self.reap(block=True)
        self.close()

    def close(self):
        for fd in (self.requests, self.pidfd, self.replies.fd if self.replies else None):
            if fd is not None:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.requests = self.pidfd = self.replies = None

    def pause(self):
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGSTOP)

    def resume(self):
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                os.kill(self.process.pid, signal.SIGCONT)


class Supervisor:
    def __init__(self, python, output_limit):
        self.output_limit = output_limit
        self.interpreter = Interpreter(python, output_limit)
        self.lost_reason = None
        # Only as process 1 of its own pid namespace may it kill "everything else" (in the weaker
        # process mode, /proc lists the host's processes).
        self.own_pid_namespace = os.getpid() == 1

    # -- processes --------------------------------------------------------------------------------

    def settle(self):
        """End of a call: pause the interpreter, kill every other process, reap the dead."""
        self.interpreter.pause()
        if not self.own_pid_namespace:
            return
        keep = {os.getpid(), self.interpreter.pid}
        for _ in range(500):
            victims = [pid for pid in _live_pids() if pid not in keep]
            if not victims:
                break
            for pid in victims:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.kill(pid, signal.SIGKILL)
            self.reap_orphans()
            time.sleep(0.001)
        self.reap_orphans()

    def reap_orphans(self):
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if not pid:
                return
            if pid == self.interpreter.pid and self.interpreter.alive():
                self.interpreter.ended(os.waitstatus_to_exitcode(status))

    # -- requests ---------------------------------------------------------------------------------

    def run_code(self, request):
        wall = float(request.get("wall_seconds", 60))
        deadline = time.monotonic() + wall
        interpreter = self.interpreter
        interpreter.reap()  # it may have died between calls (the host's OOM killer): start afresh then
        lost = None
        if not interpreter.alive():
            if interpreter.starts:
                lost = self.lost_reason or _describe_exit(interpreter.status)
            self.lost_reason = None
            try:
                interpreter.start()
            except (OSError, RuntimeError) as exc:
                return {"failed": f"the sandbox could not start its Python interpreter ({exc})"}
        frame = {"state_lost": lost is not None, "lost_reason": lost}
        interpreter.replies.drain()  # anything written between cells is stale
        interpreter.resume()
        cell = secrets.token_hex(16)
        message = json.dumps({"cell": cell, "code": request.get("code", ""),
                              "cpu_seconds": request.get("cpu_seconds", 60)})
        try:
            _write_all(interpreter.requests, (message + "\n").encode(), deadline)
            reply = interpreter.read(deadline, cell)
        except TimeoutError:
            interpreter.kill()
            self.lost_reason = (f"the previous call passed the {wall:.0f} s wall-clock limit and its processes "
                                "were killed")
            return {**frame, "timed_out": True}
        except protocol.LineTooLong:
            interpreter.kill()
            self.lost_reason = "the previous call's reply passed the size limit and the interpreter was stopped"
            return {**frame, "died": "the cell's reply was larger than the sandbox allows, so the interpreter was "
                    "stopped"}
        except BrokenPipeError:
            reply = None
        if reply is None:
            interpreter.kill()
            death = _describe_exit(interpreter.status)
            self.lost_reason = f"the previous call ended the interpreter ({death})"
            return {**frame, "died": death}
        return {**frame, **protocol.clean_code_reply(reply, self.output_limit)}

    def run_command(self, request):
        started = time.monotonic()
        wall = float(request.get("wall_seconds", 60))
        try:
            process = subprocess.Popen(["/bin/sh", "-c", request.get("command", "")], stdin=subprocess.DEVNULL,
                                       stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       cwd=os.environ.get("HOME", "/"), start_new_session=True,
                                       preexec_fn=_raise_oom_score)
        except OSError as exc:
            return {"exit_code": None, "stdout": "", "stderr": f"could not start the shell: {exc.strerror}",
                    "timed_out": False, "seconds": 0.0}
        streams = _CappedStreams(process, self.output_limit)
        timed_out = not streams.collect_until_exit(started + wall)
        if timed_out:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        # The shell is gone: whatever it left behind dies now, which also closes their copies of
        # the output pipes, so the rest of the output can be read to its end.
        self.settle()
        streams.collect_rest(time.monotonic() + 2.0)
        return {"exit_code": None if timed_out else process.returncode, **streams.result(), "timed_out": timed_out,
                "seconds": round(time.monotonic() - started, 3)}


class _CappedStreams:
    """A command's stdout and stderr: the first `limit` bytes of each kept, the rest counted."""

    def __init__(self, process, limit):
        self.process = process
        self.limit = limit
        self.kept = {process.stdout.fileno(): bytearray(), process.stderr.fileno(): bytearray()}
        self.dropped = dict.fromkeys(self.kept, 0)
        self.open = set(self.kept)
        for fd in self.kept:
            os.set_blocking(fd, False)

    def _pump(self, deadline, watch=None):
        """Read until every stream ends, `watch` becomes readable, or the deadline; True unless timed out."""
        with selectors.DefaultSelector() as selector:
            for fd in self.open:
                selector.register(fd, selectors.EVENT_READ)
            if watch is not None:
                selector.register(watch, selectors.EVENT_READ)
            while self.open:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                for key, _ in selector.select(min(remaining, 1.0)):
                    if key.fd == watch:
                        return True
                    try:
                        chunk = os.read(key.fd, 1 << 16)
                    except BlockingIOError:
                        continue
                    if not chunk:
                        self.open.discard(key.fd)
                        selector.unregister(key.fd)
                        continue
                    buffer = self.kept[key.fd]
                    room = max(0, self.limit - len(buffer))
                    buffer.extend(chunk[:room])
                    self.dropped[key.fd] += len(chunk) - min(room, len(chunk))
        return True

    def collect_until_exit(self, deadline):
        """Output until the shell exits; False when the deadline came first."""
        pidfd = os.pidfd_open(self.process.pid)
        try:
            if not self._pump(deadline, watch=pidfd):
                return False
            # Both streams may end before the shell does (it can close them): wait for the exit too.
            return bool(select.select([pidfd], [], [], max(0.0, deadline - time.monotonic()))[0])
        finally:
            os.close(pidfd)

    def collect_rest(self, deadline):
        self._pump(deadline)

    def result(self):
        out, err = self.process.stdout.fileno(), self.process.stderr.fileno()
        text = {fd: bytes(data).decode("utf-8", errors="replace") for fd, data in self.kept.items()}
        self.process.stdout.close()
        self.process.stderr.close()
        return {"stdout": text[out], "stderr": text[err], "stdout_dropped": self.dropped[out],
                "stderr_dropped": self.dropped[err]}


def _live_pids():
    """Processes of this pid namespace that are not zombies already."""
    pids = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as stat:
                state = stat.read().rsplit(b")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state not in (b"Z", b"X"):
            pids.append(int(name))
    return pids


def main():
    # The server talks on our stdin/stdout; move them where no child inherits them.
    os.dup2(0, REQUESTS_FD)
    os.dup2(1, REPLIES_FD)
    os.set_inheritable(REQUESTS_FD, False)
    os.set_inheritable(REPLIES_FD, False)
    null = os.open(os.devnull, os.O_RDWR)
    os.dup2(null, 0)
    os.dup2(null, 1)
    os.close(null)
    _not_dumpable()
    # As process 1, a signal without a handler is never delivered from inside the sandbox; Python's
    # own SIGINT handler would be, so it goes.
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    output_limit = int(os.environ.get("KERNEL_OUTPUT_LIMIT", "100000"))
    supervisor = Supervisor(sys.executable, output_limit)
    requests = protocol.LineReader(REQUESTS_FD, 64 * 2**20)
    os.set_blocking(REPLIES_FD, True)
    try:
        supervisor.interpreter.start()
    except (OSError, RuntimeError) as exc:
        sys.stderr.write(f"the Python interpreter did not start: {exc}\n")
        return 1
    supervisor.settle()
    os.write(REPLIES_FD, json.dumps({"ready": True, "python": sys.version.split()[0]}).encode() + b"\n")
    while True:
        line = requests.read(float("inf"))
        if not isinstance(line, bytes):
            return 0
        request = protocol.decode(line)
        if not isinstance(request, dict):
            continue
        handler = supervisor.run_command if request.get("kind") == "command" else supervisor.run_code
        reply = handler(request)
        supervisor.settle()
        reply["id"] = request.get("id")
        data = json.dumps(reply).encode() + b"\n"
        while data:
            data = data[os.write(REPLIES_FD, data):]


if __name__ == "__main__":
    sys.exit(main())

"""The interpreter that runs inside a sandbox: one per sandbox, state kept between requests.

Standard library only and self-contained: it is bound read-only into the sandbox and started by
the sandbox's Python, which cannot import the server's packages. It speaks JSON lines with the
server on descriptors 3 (requests) and 4 (replies), moved there from stdin/stdout at start, so
nothing user code prints can corrupt the channel; user code's stdout/stderr (Python-level and
fd-level, subprocesses included) are captured per request with a cap.
"""

import ast
import base64
import contextlib
import io
import json
import linecache
import os
import resource
import signal
import subprocess
import sys
import time
import traceback

REQUESTS_FD = 3
REPLIES_FD = 4
KERNEL_FILE = os.path.abspath(__file__)


class CpuLimitExceeded(BaseException):
    """Raised into user code when a request uses up its CPU seconds (BaseException: not swallowed by
    a bare `except Exception`)."""


class CappedWriter(io.TextIOBase):
    """A text stream that keeps the first `limit` characters and counts the rest."""

    def __init__(self, limit):
        self.limit = limit
        self.parts = []
        self.kept = 0
        self.dropped = 0

    def writable(self):
        return True

    def write(self, text):
        if not isinstance(text, str):
            raise TypeError(f"write() argument must be str, not {type(text).__name__}")
        room = self.limit - self.kept
        if room > 0:
            piece = text[:room]
            self.parts.append(piece)
            self.kept += len(piece)
        self.dropped += max(0, len(text) - max(room, 0))
        return len(text)

    def flush(self):
        pass

    def value(self):
        return "".join(self.parts)


class FdCapture:
    """OS-level output (subprocesses, os.write) goes to a private file that is read after each request."""

    def __init__(self, fd, path):
        self.fd = fd
        self.path = path
        handle = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        os.dup2(handle, fd)
        os.close(handle)

    def take(self, limit):
        try:
            size = os.path.getsize(self.path)
            with open(self.path, "rb") as f:
                data = f.read(limit)
            os.truncate(self.path, 0)
            os.lseek(self.fd, 0, os.SEEK_SET)
        except OSError:
            return "", 0
        return data.decode("utf-8", errors="replace"), max(0, size - len(data))


def _on_cpu_limit(_signum, _frame):
    raise CpuLimitExceeded("the CPU time limit for this call was reached")


def _set_call_cpu_limit(seconds):
    used = resource.getrusage(resource.RUSAGE_SELF)
    spent = int(used.ru_utime + used.ru_stime) + 1
    _soft, hard = resource.getrlimit(resource.RLIMIT_CPU)
    soft = spent + int(seconds)
    if hard != resource.RLIM_INFINITY:
        soft = min(soft, hard)
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_CPU, (soft, hard))


def _figures():
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return []
    images = []
    try:
        for number in pyplot.get_fignums():
            figure = pyplot.figure(number)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            images.append(base64.b64encode(buffer.getvalue()).decode("ascii"))
        pyplot.close("all")
    except Exception as exc:  # a broken figure must not lose the rest of the result
        sys.__stderr__.write(f"figure capture failed: {exc}\n")
    return images


def _user_traceback(exc):
    frames = traceback.TracebackException.from_exception(exc, capture_locals=False)
    frames.stack = traceback.StackSummary.from_list(
        [f for f in frames.stack if os.path.abspath(f.filename) != KERNEL_FILE]
    )
    return "".join(frames.format())


def _safe_repr(value, limit):
    try:
        text = repr(value)
    except Exception as exc:
        text = f"<repr failed: {type(exc).__name__}>"
    return text if len(text) <= limit else text[:limit] + f"... [{len(text) - limit} more characters]"


class Kernel:
    def __init__(self, output_limit):
        self.namespace = {"__name__": "__main__", "__builtins__": __builtins__}
        self.cell = 0
        self.output_limit = output_limit
        self.fd_out = FdCapture(1, "/tmp/.kernel-fd1")
        self.fd_err = FdCapture(2, "/tmp/.kernel-fd2")

    def run_code(self, code, cpu_seconds):
        self.cell += 1
        name = f"<cell {self.cell}>"
        linecache.cache[name] = (len(code), None, code.splitlines(True), name)
        out, err = CappedWriter(self.output_limit), CappedWriter(self.output_limit)
        result, error = None, None
        saved = sys.stdout, sys.stderr
        sys.stdout, sys.stderr = out, err
        started = time.monotonic()
        _set_call_cpu_limit(cpu_seconds)
        try:
            tree = ast.parse(code, filename=name, mode="exec")
            last = None
            if tree.body and isinstance(tree.body[-1], ast.Expr):
                last = ast.Expression(tree.body.pop().value)
            exec(compile(tree, name, "exec"), self.namespace)
            if last is not None:
                value = eval(compile(last, name, "eval"), self.namespace)
                if value is not None:
                    self.namespace["_"] = value
                    result = _safe_repr(value, self.output_limit)
        except BaseException as exc:
            error = {"name": type(exc).__name__, "value": str(exc)[:2000], "traceback": _user_traceback(exc)}
        finally:
            _set_call_cpu_limit(10**6)
            sys.stdout, sys.stderr = saved
        fd_stdout, fd_out_dropped = self.fd_out.take(self.output_limit)
        fd_stderr, fd_err_dropped = self.fd_err.take(self.output_limit)
        return {
            "stdout": out.value() + fd_stdout,
            "stderr": err.value() + fd_stderr,
            "stdout_dropped": out.dropped + fd_out_dropped,
            "stderr_dropped": err.dropped + fd_err_dropped,
            "result": result,
            "error": error,
            "images": _figures(),
            "seconds": round(time.monotonic() - started, 3),
        }

    def run_command(self, command, timeout):
        started = time.monotonic()
        try:
            process = subprocess.Popen(["/bin/sh", "-c", command], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       stdin=subprocess.DEVNULL, cwd=os.environ.get("HOME", "/"),
                                       start_new_session=True)
        except OSError as exc:
            return {"exit_code": None, "stdout": "", "stderr": f"could not start the shell: {exc}",
                    "stdout_dropped": 0, "stderr_dropped": 0, "timed_out": False, "seconds": 0.0}
        try:
            stdout, stderr = process.communicate(timeout=timeout)
            timed_out = False
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            stdout, stderr = process.communicate()
            timed_out = True
        limit = self.output_limit
        return {
            "exit_code": process.returncode,
            "stdout": stdout[:limit].decode("utf-8", errors="replace"),
            "stderr": stderr[:limit].decode("utf-8", errors="replace"),
            "stdout_dropped": max(0, len(stdout) - limit),
            "stderr_dropped": max(0, len(stderr) - limit),
            "timed_out": timed_out,
            "seconds": round(time.monotonic() - started, 3),
        }


def main():
    # The server talks on our stdin/stdout; move them out of user code's way first.
    os.dup2(0, REQUESTS_FD)
    os.dup2(1, REPLIES_FD)
    os.set_inheritable(REQUESTS_FD, False)
    os.set_inheritable(REPLIES_FD, False)
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    requests = os.fdopen(REQUESTS_FD, "r", encoding="utf-8")
    replies = os.fdopen(REPLIES_FD, "w", encoding="utf-8")
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-large file becomes an OSError, not a kill
    kernel = Kernel(int(os.environ.get("KERNEL_OUTPUT_LIMIT", "100000")))
    replies.write(json.dumps({"ready": True, "python": sys.version.split()[0]}) + "\n")
    replies.flush()
    for line in requests:
        request = json.loads(line)
        if request.get("kind") == "command":
            reply = kernel.run_command(request["command"], float(request.get("timeout", 60)))
        else:
            reply = kernel.run_code(request["code"], float(request.get("cpu_seconds", 60)))
        reply["id"] = request.get("id")
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()

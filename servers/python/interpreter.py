"""The notebook interpreter inside a sandbox: runs user code, keeps its state between requests.

Standard library only (it runs under the sandbox's Python, which cannot import the server's
packages). It is started by the sandbox's supervisor (`kernel.py`) and talks only to it, over two
pipes whose numbers it gets on the command line. Everything here is reachable by user code, which
runs in this process: the supervisor treats every reply from here as untrusted data (capped,
validated, and framed with an id this process never sees). User code's stdout/stderr
(Python-level and fd-level, subprocesses included) are captured per request with a cap.
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
import sys
import time
import traceback

from protocol import IMAGE_CHARS, MAX_IMAGES

INTERPRETER_FILE = os.path.abspath(__file__)


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
    """(base64 PNGs of the first MAX_IMAGES open figures, how many figures there were); all are closed."""
    pyplot = sys.modules.get("matplotlib.pyplot")
    if pyplot is None:
        return [], 0
    images = []
    numbers = []
    try:
        numbers = pyplot.get_fignums()
        for number in numbers[:MAX_IMAGES]:
            figure = pyplot.figure(number)
            buffer = io.BytesIO()
            figure.savefig(buffer, format="png", dpi=100, bbox_inches="tight")
            encoded = base64.b64encode(buffer.getvalue()).decode("ascii")
            if len(encoded) <= IMAGE_CHARS:  # a larger one would only be refused by the supervisor
                images.append(encoded)
        pyplot.close("all")
    except Exception as exc:  # a broken figure must not lose the rest of the result
        sys.__stderr__.write(f"figure capture failed: {exc}\n")
    return images, len(numbers)


def _user_traceback(exc):
    frames = traceback.TracebackException.from_exception(exc, capture_locals=False)
    frames.stack = traceback.StackSummary.from_list(
        [f for f in frames.stack if os.path.abspath(f.filename) != INTERPRETER_FILE]
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
        images, made = _figures()
        fd_stdout, fd_out_dropped = self.fd_out.take(self.output_limit)
        fd_stderr, fd_err_dropped = self.fd_err.take(self.output_limit)
        return {
            "stdout": out.value() + fd_stdout,
            "stderr": err.value() + fd_stderr,
            "stdout_dropped": out.dropped + fd_out_dropped,
            "stderr_dropped": err.dropped + fd_err_dropped,
            "result": result,
            "error": error,
            "images": images,
            "images_made": made,
            "seconds": round(time.monotonic() - started, 3),
        }


def main():
    requests_fd, replies_fd = int(sys.argv[1]), int(sys.argv[2])
    null = os.open(os.devnull, os.O_RDONLY)
    os.dup2(null, 0)
    os.close(null)
    # The first to go when the sandbox runs out of memory: the supervisor must survive to report it.
    with contextlib.suppress(OSError), open("/proc/self/oom_score_adj", "w") as adjust:
        adjust.write("1000")
    requests = os.fdopen(requests_fd, "r", encoding="utf-8")
    replies = os.fdopen(replies_fd, "w", encoding="utf-8")
    signal.signal(signal.SIGXCPU, _on_cpu_limit)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # an over-large file becomes an OSError, not a kill
    kernel = Kernel(int(os.environ.get("KERNEL_OUTPUT_LIMIT", "100000")))
    replies.write(json.dumps({"cell": "ready"}) + "\n")
    replies.flush()
    for line in requests:
        # User code can open its own request pipe for writing (/proc/self/fd/N): a line that is not
        # a request is skipped, and one it forges only runs code it could run anyway.
        try:
            request = json.loads(line)
        except ValueError:
            continue
        if not isinstance(request, dict) or not isinstance(request.get("code"), str):
            continue
        reply = kernel.run_code(request["code"], float(request.get("cpu_seconds", 60)))
        reply["cell"] = request.get("cell")
        replies.write(json.dumps(reply) + "\n")
        replies.flush()


if __name__ == "__main__":
    main()

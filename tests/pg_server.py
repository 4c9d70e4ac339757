"""A real PostgreSQL with pgvector for the tests and benchmarks, from the PyPI package `pgserver`.

`pgserver` ships PostgreSQL 16 with pgvector 0.6.2 and can start it itself, but run as root its own
start-up creates a system account (`useradd pgserver`), widens the permissions of every folder
above its data folder and its install, and serves only a Unix socket with `trust` authentication
(no password can be wrong). That is no fixture for a shared machine, nor for testing a wrong
password. So only its binaries are used here, started the way an operator would: `initdb` with a
SCRAM password for TCP, then `postgres` on 127.0.0.1 and a free port. PostgreSQL refuses to run as
root, so under root both run as the existing unprivileged account `nobody`, in a data folder of its
own under the system temp folder (pytest's tmp_path is private to root and cannot be entered by
`nobody`); when the installed binaries are not readable by `nobody` (a venv in a private folder),
they are copied next to the data folder first.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from pathlib import Path

USER = "toolsuite"
PASSWORD = "pg-test-password-7d1f"
UNPRIVILEGED = "nobody"


def available() -> bool:
    return _install() is not None


def _install() -> Path | None:
    spec = importlib.util.find_spec("pgserver")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "pginstall"
    return folder if (folder / "bin" / "postgres").is_file() else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _reachable_by_others(path: Path) -> bool:
    """Whether an unprivileged account can traverse to `path` and read and run what is in it."""
    for folder in [path, *path.parents]:
        if not folder.stat().st_mode & stat.S_IXOTH:
            return False
    binary = path / "bin" / "postgres"
    return bool(binary.stat().st_mode & stat.S_IXOTH)


class LocalPostgres:
    """One PostgreSQL server on 127.0.0.1 (password authentication over TCP), stopped by `stop`.

    `durable=False` (tests) turns off fsync: a crash of the test machine loses nothing that matters.
    The benchmark keeps PostgreSQL's durable defaults, to compare build times fairly with SQLite."""

    def __init__(self, *, durable: bool = False, port: int | None = None) -> None:
        install = _install()
        if install is None:
            raise RuntimeError("pgserver is not installed: pip install -e '.[dev]'")
        self.durable = durable
        self.port = port or _free_port()
        self.folder = Path(tempfile.mkdtemp(prefix="toolsuite-pg-"))
        self.data = self.folder / "data"
        self.log_path = self.folder / "postgres.log"
        self._account: pwd.struct_passwd | None = None
        if os.geteuid() == 0:
            self._account = pwd.getpwnam(UNPRIVILEGED)
            os.chmod(self.folder, 0o755)
            if not _reachable_by_others(install):
                install = self._copy_for_others(install)
        self.bin = install / "bin"
        self.process: subprocess.Popen[bytes] | None = None
        self._init()

    def _copy_for_others(self, install: Path) -> Path:
        """A copy of the binaries the unprivileged account can run. The wheel's programs find their
        bundled libraries through RPATH $ORIGIN/../../../pgserver.libs, so that layout is kept."""
        site = self.folder / "site"
        copy = site / "pgserver" / "pginstall"
        shutil.copytree(install, copy, symlinks=True)
        libraries = install.parent.parent / "pgserver.libs"
        if libraries.is_dir():
            shutil.copytree(libraries, site / "pgserver.libs", symlinks=True)
        for entry in [site, *site.rglob("*")]:
            if entry.is_symlink():
                continue
            mode = entry.stat().st_mode
            runnable = entry.is_dir() or mode & stat.S_IXUSR
            entry.chmod(mode | stat.S_IROTH | (stat.S_IXOTH if runnable else 0))
        return copy

    # -- processes --------------------------------------------------------------------------------

    def _as_owner(self) -> dict[str, object]:
        """Popen arguments that run a PostgreSQL program as the account owning the data folder."""
        if self._account is None:
            return {}
        return {"user": self._account.pw_uid, "group": self._account.pw_gid, "extra_groups": [],
                "env": {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}}

    def _own(self, path: Path) -> None:
        if self._account is not None:
            os.chown(path, self._account.pw_uid, self._account.pw_gid)

    def _init(self) -> None:
        self.data.mkdir(mode=0o700)
        self._own(self.data)
        password_file = self.folder / "pw"
        password_file.write_text(PASSWORD + "\n")
        self._own(password_file)
        subprocess.run([str(self.bin / "initdb"), "-D", str(self.data), "-U", USER, f"--pwfile={password_file}",
                        "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-locale",
                        *([] if self.durable else ["--no-sync"])],
                       check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, timeout=120,
                       **self._as_owner())  # type: ignore[arg-type]
        password_file.unlink()

    def start(self, timeout: float = 60) -> LocalPostgres:
        settings = ["-c", "listen_addresses=127.0.0.1", "-p", str(self.port), "-k", str(self.data),
                    "-c", "max_connections=200", "-c", "shared_buffers=256MB"]
        if not self.durable:
            settings += ["-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off"]
        log = open(self.log_path, "ab")  # noqa: SIM115 - handed to the server process
        self._own(self.log_path)
        self.process = subprocess.Popen([str(self.bin / "postgres"), "-D", str(self.data), *settings],
                                        stdin=subprocess.DEVNULL, stdout=log, stderr=log, start_new_session=True,
                                        **self._as_owner())  # type: ignore[arg-type]
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.process.returncode}: {self.log()[-2000:]}")
            ready = subprocess.run([str(self.bin / "pg_isready"), "-h", "127.0.0.1", "-p", str(self.port),
                                    "-U", USER, "-d", "postgres"], capture_output=True, timeout=10)
            if ready.returncode == 0:
                return self
            time.sleep(0.2)
        raise RuntimeError(f"postgres did not accept connections in {timeout:.0f} s: {self.log()[-2000:]}")

    def stop(self, timeout: float = 30) -> None:
        """Fast shutdown (SIGINT): open sessions are ended, as when a database server restarts."""
        process, self.process = self.process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout)

    def restart(self) -> None:
        self.stop()
        self.start()

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.folder, ignore_errors=True)

    def log(self) -> str:
        with contextlib.suppress(OSError):
            return self.log_path.read_text(errors="replace")
        return ""

    # -- databases --------------------------------------------------------------------------------

    def url(self, database: str = "postgres", *, password: str = PASSWORD, user: str = USER,
            port: int | None = None) -> str:
        return f"postgresql://{user}:{password}@127.0.0.1:{port or self.port}/{database}"

    def psql(self, sql: str, database: str = "postgres") -> str:
        done = subprocess.run([str(self.bin / "psql"), "-X", "-q", "-t", "-A", "-v", "ON_ERROR_STOP=1",
                               self.url(database), "-c", sql], capture_output=True, text=True, timeout=120)
        if done.returncode:
            raise RuntimeError(done.stderr.strip())
        return done.stdout

    def create_database(self, name: str) -> str:
        """A new database with pgvector, as an operator prepares one; returns its URL."""
        self.psql(f'CREATE DATABASE "{name}"')
        self.psql("CREATE EXTENSION IF NOT EXISTS vector", name)
        return self.url(name)

    def __enter__(self) -> LocalPostgres:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.cleanup()

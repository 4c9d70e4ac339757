"""The connection to the PostgreSQL database named by TOOLSUITE_RAG_STORE: a psycopg 3 connection
pool, errors that name the setting (password hidden), reads retried across a database restart,
and session advisory locks that coordinate builders on every machine that uses the database.

Nothing connects until the first call that needs the store: a server whose database is down or
whose password is wrong still starts, lists its tools and answers the tools that need no index;
the calls that need it fail with a message naming the setting and PostgreSQL's reason, and the
next call tries again (so the database may come up after the servers).
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import struct
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit, urlunsplit

from shared.errors import Cancelled, NotConfigured, RemoteError, TimedOut

log = logging.getLogger("toolsuite.rag.postgres")

SETTING = "TOOLSUITE_RAG_STORE"
CONNECT_TIMEOUT = 5  # seconds to open one connection
POOL_WAIT = 15.0  # seconds a call waits for a pooled connection before the database counts as unreachable
POOL_SIZE = 8  # connections per process: each store call holds one only for its own statements
READ_ATTEMPTS = 3  # a read that lost its connection (the database restarted) is tried again on a fresh one
HNSW_EF_SEARCH = 400  # candidates an HNSW scan keeps: at least the largest ranking asked for (200)
LOCK_POLL = 0.2
# A lock holder whose machine died (not just its process) is noticed by the database within about
# a minute, not after the operating system's two-hour default, so its lock passes to another replica.
KEEPALIVE = {"keepalives": 1, "keepalives_idle": 20, "keepalives_interval": 10, "keepalives_count": 3}
LOCK_SESSION = ("SET tcp_keepalives_idle = 20", "SET tcp_keepalives_interval = 10", "SET tcp_keepalives_count = 3")

T = TypeVar("T")


class StoreUnavailable(RemoteError):
    """The database cannot be reached or refused the connection; the message names the setting."""


def redacted(url: str) -> str:
    """The URL as messages and logs show it: the password replaced by ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "postgresql://***"
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    netloc = f"{user}:***@{host}" + (f":{parts.port}" if parts.port else "")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))


def lock_key(*parts: str) -> int:
    """A signed 64-bit advisory lock key for `parts` (stable across processes and machines)."""
    return int.from_bytes(hashlib.sha256("\x1f".join(("toolsuite-rag", *parts)).encode()).digest()[:8], "big",
                          signed=True)


def _driver() -> Any:
    try:
        import psycopg
        import psycopg_pool  # noqa: F401 - checked here so the message names both
    except ModuleNotFoundError:
        raise NotConfigured(f"{SETTING} points at PostgreSQL but its driver is not installed: "
                            "pip install 'toolsuite[rag]' (psycopg with its pool)") from None
    return psycopg


class Vector:
    """A float32 vector sent to pgvector in its binary form (exact, no text round trip)."""

    __slots__ = ("values",)

    def __init__(self, values: Any) -> None:
        self.values = values


def _vector_dumper(oid: int) -> type:
    from psycopg.adapt import Dumper
    from psycopg.pq import Format

    from servers.rag.numeric import numpy

    class VectorDumper(Dumper):
        format = Format.BINARY

        def dump(self, obj: Vector) -> bytes:
            array = numpy().asarray(obj.values, dtype=">f4").reshape(-1)
            return struct.pack(">HH", array.shape[0], 0) + array.tobytes()

    VectorDumper.oid = oid
    return VectorDumper


class Database:
    """One database, shared by every index (each index lives in a schema of its own)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.shown = redacted(url)
        self._pool: Any = None
        self._vector_oid: int | None = None
        self._lock = threading.Lock()

    # -- errors -----------------------------------------------------------------------------------

    def unavailable(self, exc: BaseException | str) -> StoreUnavailable:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        parts = urlsplit(self.url)
        if parts.password:
            reason = reason.replace(parts.password, "***")
        reason = reason.removeprefix("connection failed: ")
        return StoreUnavailable(f"the RAG index store in PostgreSQL ({SETTING}={self.shown}) cannot be used: "
                                f"{reason}. Check that the database is running and reachable and that the user "
                                f"and password in {SETTING} are right; the next call tries again")

    def _connect(self) -> Any:
        psycopg = _driver()
        try:
            return psycopg.connect(self.url, autocommit=True, connect_timeout=CONNECT_TIMEOUT,
                                   application_name="toolsuite-rag", **KEEPALIVE)
        except psycopg.Error as exc:
            raise self.unavailable(exc) from None
        except ValueError as exc:  # a URL psycopg cannot parse
            raise NotConfigured(f"{SETTING}={self.shown} is not a PostgreSQL URL psycopg accepts: "
                                f"{str(exc).splitlines()[0]}") from None

    def check(self) -> None:
        """Connect once and look for pgvector, changing nothing (for `toolsuite doctor`)."""
        with self._connect() as connection:
            if connection.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'vector'").fetchone() is None:
                raise NotConfigured(f"the PostgreSQL server of {SETTING}={self.shown} has no pgvector extension "
                                    "installed (use the pgvector/pgvector image, or install pgvector)")

    # -- the pool ---------------------------------------------------------------------------------

    def _prepare(self) -> int:
        """Check the database can be used (a clear error if not) and has pgvector; the vector type's OID."""
        psycopg = _driver()
        with self._connect() as connection:
            row = connection.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()
            if row is None:
                try:
                    connection.execute("CREATE EXTENSION IF NOT EXISTS vector")
                except psycopg.Error as exc:
                    raise NotConfigured(
                        f"the database of {SETTING}={self.shown} has no pgvector extension and this user cannot "
                        f"add it ({str(exc).splitlines()[0]}): run `CREATE EXTENSION vector;` in that database as "
                        "its owner or a superuser") from None
                row = connection.execute("SELECT oid FROM pg_type WHERE typname = 'vector'").fetchone()
            return int(row[0])

    def pool(self) -> Any:
        pool = self._pool
        if pool is not None:
            return pool
        with self._lock:
            if self._pool is None:
                from psycopg_pool import ConnectionPool

                oid = self._prepare()
                dumper = _vector_dumper(oid)

                def configure(connection: Any) -> None:
                    connection.autocommit = True
                    connection.adapters.register_dumper(Vector, dumper)
                    connection.execute(f"SET hnsw.ef_search = {HNSW_EF_SEARCH}")

                self._vector_oid = oid
                self._pool = ConnectionPool(
                    self.url, min_size=1, max_size=POOL_SIZE, open=True, configure=configure, timeout=POOL_WAIT,
                    name="toolsuite-rag",
                    kwargs={"autocommit": True, "connect_timeout": CONNECT_TIMEOUT,
                            "application_name": "toolsuite-rag", **KEEPALIVE})
                log.info("tool-rag index store: PostgreSQL at %s (pool of up to %d connections, pid %d)", self.shown,
                         POOL_SIZE, os.getpid())
            return self._pool

    def close(self) -> None:
        with self._lock:
            pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()

    @contextlib.contextmanager
    def _connection(self) -> Iterator[Any]:
        from psycopg_pool import PoolTimeout

        pool = self.pool()
        try:
            with pool.connection() as connection:
                yield connection
        except PoolTimeout:
            # Every pooled connection is in use or cannot be made: ask the database directly, for its reason.
            self._connect().close()
            raise self.unavailable(f"no connection could be had within {POOL_WAIT:.0f} s") from None

    def read(self, work: Callable[[Any], T]) -> T:
        """Run read-only statements; a connection lost on the way (the database restarted) is replaced
        and the reads are done again, so a restart costs the call a moment, not an error."""
        psycopg = _driver()
        for attempt in range(READ_ATTEMPTS):
            try:
                with self._connection() as connection:
                    return work(connection)
            except psycopg.OperationalError as exc:
                if attempt == READ_ATTEMPTS - 1:
                    raise self.unavailable(exc) from None
                log.info("PostgreSQL connection lost (%s); reading again on a new one", str(exc).splitlines()[0])
                with contextlib.suppress(Exception):
                    self.pool().check()  # drop the other dead connections of the pool too
                time.sleep(0.5 * (attempt + 1))
        raise AssertionError("unreachable")

    def write(self, work: Callable[[Any], T]) -> T:
        """Run statements in one transaction: all of it is committed or none. A write that loses its
        connection is not repeated here (whether it committed is unknown): the error says so, and the
        next call carries on from what is committed."""
        psycopg = _driver()
        try:
            with self._connection() as connection, connection.transaction():
                return work(connection)
        except psycopg.OperationalError as exc:
            with contextlib.suppress(Exception):
                self.pool().check()
            raise self.unavailable(exc) from None

    # -- advisory locks ---------------------------------------------------------------------------

    @contextlib.contextmanager
    def session_lock(self, key: int, wait: float, cancel: threading.Event | None, busy: str) -> Iterator[None]:
        """A session advisory lock on a connection of its own, held for the block: PostgreSQL lets it
        go when the holder's session ends, however the process ends (killed, crashed, its machine gone
        once the keepalives time out), so no lock outlives its holder."""
        psycopg = _driver()
        connection = self._connect()
        try:
            for statement in LOCK_SESSION:
                connection.execute(statement)
            deadline = time.monotonic() + wait
            while not connection.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()[0]:
                if cancel is not None and cancel.is_set():
                    raise Cancelled(f"the call was cancelled while {busy}")
                if time.monotonic() >= deadline:
                    raise TimedOut(f"{busy}; try again shortly")
                time.sleep(LOCK_POLL)
            yield
        except psycopg.OperationalError as exc:
            raise self.unavailable(exc) from None
        finally:
            with contextlib.suppress(Exception):
                connection.close()  # ending the session releases the lock

    def lock_held(self, key: int) -> bool:
        """Whether any session of this database holds the advisory lock `key` now."""
        unsigned = key & 0xFFFFFFFFFFFFFFFF
        return self.read(lambda c: bool(c.execute(
            "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted AND objsubid = 1 "
            "AND classid = %s AND objid = %s AND database = (SELECT oid FROM pg_database "
            "WHERE datname = current_database()))", (unsigned >> 32, unsigned & 0xFFFFFFFF)).fetchone()[0]))

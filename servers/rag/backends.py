"""Where tool-rag keeps its indexes, chosen by one setting, TOOLSUITE_RAG_STORE:

- unset (the default): SQLite files under TOOLSUITE_CACHE_DIR/rag, one process or one machine;
- `postgresql://user:password@host:5432/database`: one PostgreSQL database with pgvector, shared by
  every replica pointed at it (servers on several machines behind a load balancer).

The PostgreSQL backend connects on first use, never at start-up: a server whose database is
unreachable still starts and answers what needs no index.
"""

from __future__ import annotations

import threading

from servers.rag.store import StoreBackend
from shared import settings
from shared.settings import BadSetting

SETTING = "TOOLSUITE_RAG_STORE"
_SCHEMES = ("postgresql://", "postgres://")

_lock = threading.Lock()
_shared: dict[str, StoreBackend] = {}


def store_url() -> str | None:
    """The PostgreSQL URL of TOOLSUITE_RAG_STORE, or None for the SQLite store."""
    value = settings.raw(SETTING)
    if value is None:
        return None
    if not value.lower().startswith(_SCHEMES):
        from servers.rag.pg_database import redacted

        raise BadSetting(f"{SETTING}={redacted(value)!r} is not a PostgreSQL URL: leave it unset for the local "
                         "SQLite index, or set postgresql://user:password@host:5432/database")
    return value


def describe() -> str:
    """Which store is in use, as logs and `toolsuite doctor` show it (no password)."""
    url = store_url()
    if url is None:
        return "SQLite (TOOLSUITE_CACHE_DIR/rag)"
    from servers.rag.pg_database import redacted

    return f"PostgreSQL ({redacted(url)})"


def backend() -> StoreBackend:
    """The backend of the current setting; one per process and URL, so its connection pool is shared."""
    url = store_url()
    if url is None:
        from servers.rag.sqlite_store import SqliteBackend

        return SqliteBackend()
    with _lock:
        found = _shared.get(url)
        if found is None:
            from servers.rag.pg_store import PostgresBackend

            found = _shared[url] = PostgresBackend(url)
        return found

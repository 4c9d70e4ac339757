"""The layout of one tool-rag index in PostgreSQL: a schema per index key (`rag_<key>`), so indexes
of different collections, chunkers or embedders never mix, each has its own vector dimension, and
one `DROP SCHEMA ... CASCADE` removes an index whole.

- `build_state`: one row, the index's progress and statistics, committed with every batch (what the
  next process, on any machine, reads to resume or to answer);
- `docs` (by content key, with their bodies), `positions` (record position -> document), `chunks`
  (text, length in lexemes);
- the lexical index: `postings`, per lexeme and batch the packed (chunk, count, length) entries of
  `lexemes.postings`, found by a B-tree on the lexeme; a lexeme's fragment sizes add up to the
  number of chunks holding it (BM25's document frequency), so no other statistics table is kept;
- `chunk_vectors` (row i = chunk i, with its document): a pgvector column of the embedder's
  dimension (512 for USE) under an HNSW index (inner product: the vectors are normalised), made
  when the first vectors arrive, since only then is the dimension known.
"""

from __future__ import annotations

import re

VERSION = "rag-pg-2"  # part of every index key: a layout change makes new indexes, never misreads old ones

_KEY = re.compile(r"[0-9a-f]{8,60}")


def schema_name(key: str) -> str:
    if not _KEY.fullmatch(key):
        raise ValueError(f"not an index key: {key!r}")
    return f"rag_{key}"


def tables(schema: str) -> list[str]:
    s = schema
    return [
        f"CREATE SCHEMA IF NOT EXISTS {s}",
        f"""CREATE TABLE IF NOT EXISTS {s}.build_state (
            only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),
            next_doc integer NOT NULL DEFAULT 0,
            next_chunk integer NOT NULL DEFAULT 0,
            lexical_rows bigint NOT NULL DEFAULT 0,
            lexical_tokens bigint NOT NULL DEFAULT 0,
            update_read integer,
            update_new integer,
            source text,
            generation integer NOT NULL DEFAULT 0,
            documents integer NOT NULL DEFAULT 0,
            live_chunks integer NOT NULL DEFAULT 0,
            cjk_share double precision NOT NULL DEFAULT 0,
            build_seconds double precision,
            updated_documents integer NOT NULL DEFAULT 0,
            chunk_vector_rows integer NOT NULL DEFAULT 0,
            chunk_vector_dim integer,
            builder_pid integer,
            builder_heartbeat double precision,
            builder_error text,
            builder_error_at double precision)""",
        f"INSERT INTO {s}.build_state (only_row) VALUES (true) ON CONFLICT DO NOTHING",
        f"""CREATE TABLE IF NOT EXISTS {s}.docs (
            id integer PRIMARY KEY, key text NOT NULL UNIQUE, title text NOT NULL, url text,
            chunks integer NOT NULL, chars integer NOT NULL, cjk_chars integer NOT NULL,
            sampled_chars integer NOT NULL, body text NOT NULL)""",
        f"CREATE TABLE IF NOT EXISTS {s}.positions (position integer PRIMARY KEY, doc_id integer NOT NULL UNIQUE)",
        f"""CREATE TABLE IF NOT EXISTS {s}.chunks (
            id integer PRIMARY KEY, doc_id integer NOT NULL, chunk_index integer NOT NULL, text text NOT NULL,
            length integer NOT NULL)""",
        f"CREATE INDEX IF NOT EXISTS chunks_by_doc ON {s}.chunks (doc_id, chunk_index)",
        f"CREATE TABLE IF NOT EXISTS {s}.postings (term text NOT NULL, entries bytea NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS postings_by_term ON {s}.postings (term)",
    ]


def vector_table(schema: str) -> str:
    return f"{schema}.chunk_vectors"


def vector_tables(schema: str, dim: int) -> list[str]:
    """The chunk vectors' table. Each vector carries its chunk's document, so a ranking keeps the
    searchable rows by joining the small table of positions, never the wide table of chunk texts."""
    table = vector_table(schema)
    return [
        f"CREATE TABLE IF NOT EXISTS {table} (id integer PRIMARY KEY, doc_id integer NOT NULL, "
        f"embedding vector({int(dim)}) NOT NULL)",
        f"CREATE INDEX IF NOT EXISTS chunk_vectors_hnsw ON {table} USING hnsw (embedding vector_ip_ops)",
    ]

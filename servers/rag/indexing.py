"""Building a collection's index into a store and keeping it in step with the file.

`update` brings the lexical index up to the file's current version within the call: it reads every
record, keys it by its content, chunks and tokenizes only the records whose content the index does
not hold yet, and publishes the new order of positions in one step (so readers see either the old
version or the new one, and citations of unchanged records stay valid). Reading 12,000 records and
hashing them takes about a second; the chunking and tokenizing it saves is what took a first build
40 s. `build_vectors` embeds whatever chunks have no vector yet, so a build interrupted at any point,
or extended by an update, carries on where it stopped.

With a shared store (PostgreSQL, used by replicas on several machines) one process builds and the
others do not queue behind it: they answer from what it has committed so far and say so.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

from servers.rag import chunker, tokens
from servers.rag.embedders import Embedder
from servers.rag.loader import Record, iter_records
from servers.rag.store import (
    ChunkEntry,
    DocumentEntry,
    Publication,
    SourceMark,
    Store,
    StoredDocument,
    UpdateProgress,
)
from shared import cjk
from shared.errors import Cancelled, InputError, TimedOut
from shared.worker import ProgressFn

BATCH_DOCS = 200
# USE embeds 60-70 chunks a second: a batch is a few seconds of work, which is how long a builder
# asked to stop may take, and the most a crash can lose.
VECTOR_BATCH = 256
SAMPLE_CHARS = 2000  # of each body, for the collection's share of Chinese text
READ_ATTEMPTS = 3  # reads of a file that keeps changing while it is read, before taking the last one
SHARED_POLL = 0.5  # seconds between looks at a shared store another process is building


class SourceIncomplete(InputError):
    """The collection file cannot be read whole now (e.g. another program is still writing it)."""


def content_key(title: str, url: str | None, body: str, occurrence: int) -> str:
    """What identifies a document across versions of the file: its content, not its position.
    Equal records are told apart by their occurrence number, so each keeps a position of its own."""
    digest = hashlib.sha256("\x1f".join((title, url or "", body)).encode("utf-8", "surrogatepass")).hexdigest()[:32]
    return digest if occurrence == 0 else f"{digest}#{occurrence}"


def entry(key: str, title: str, url: str | None, body: str) -> DocumentEntry:
    title_terms = tokens.tokenize(title)  # in every chunk's indexed text, never a chunk of its own
    chunks = [ChunkEntry(chunk.chunk_index, chunk.text, title_terms + tokens.tokenize(chunk.text))
              for chunk in chunker.chunk_document(0, body)]
    sample = body[:SAMPLE_CHARS]
    return DocumentEntry(key, title, url, body, chunks, cjk_chars=cjk.count_han(sample), sampled_chars=len(sample))


def _removed_entry(document: StoredDocument) -> DocumentEntry:
    return entry(document.key, document.title, document.url, document.body)


def up_to_date(store: Store, source: Path) -> bool:
    """The searchable index reflects the file as it is now (one stat, one small read)."""
    return store.source() == SourceMark.of(source)


def _read(store: Store, source: Path, progress: ProgressFn | None,
          cancel: threading.Event | None) -> tuple[list[str], int, int]:
    """Read the file once, taking in the records whose content is new: (keys by position, records
    read, new documents). Raises `SourceIncomplete` when the file does not parse to the end.
    During a first build each batch also carries the positions of the records read since the last
    one, so a shared store can answer from them while the build goes on."""
    held = store.document_keys()
    first_build = store.source() is None
    order: list[str] = []
    seen: dict[str, int] = {}
    batch: list[DocumentEntry] = []
    placed_from = 0
    new = 0
    records = iter_records(source)
    while True:
        try:
            record: Record = next(records)
        except StopIteration:
            break
        except InputError as exc:
            raise SourceIncomplete(str(exc)) from None
        if cancel is not None and cancel.is_set():
            raise Cancelled("indexing was cancelled; the next call resumes where it stopped")
        base = content_key(record.title, record.url, record.body, 0)
        occurrence = seen.get(base, 0)
        seen[base] = occurrence + 1
        key = base if occurrence == 0 else content_key(record.title, record.url, record.body, occurrence)
        order.append(key)
        if key in held:
            continue
        held.add(key)
        batch.append(entry(key, record.title, record.url, record.body))
        new += 1
        if len(batch) >= BATCH_DOCS:
            store.add_documents(batch, UpdateProgress(len(order), new), _placed(order, placed_from, first_build))
            batch = []
            placed_from = len(order)
            if progress is not None:
                progress(len(order), None, f"read {len(order)} records, indexed {new} new or changed")
    if batch:
        store.add_documents(batch, UpdateProgress(len(order), new), _placed(order, placed_from, first_build))
    return order, len(order), new


def _placed(order: list[str], start: int, first_build: bool) -> list[tuple[int, str]]:
    return list(enumerate(order[start:], start=start)) if first_build else []


def update(store: Store, source: Path, *, progress: ProgressFn | None = None,
           cancel: threading.Event | None = None, wait: float = 600) -> bool:
    """Bring the lexical index up to the file's current version; True when something was published.

    A file that changes while it is read (a record appended during the build) is read again; if it
    keeps changing, the last complete read is published under the version seen before it, so the
    next call reads it once more. A file that does not parse to the end (truncated mid-write) is
    never published: `SourceIncomplete` is raised and the previous version stays searchable."""
    if up_to_date(store, source):
        return False
    lock = _build_lock_or_none(store, wait, cancel) if store.shared else store.build_lock(wait, cancel)
    if lock is None:
        return False
    with lock:
        started = time.perf_counter()
        for _attempt in range(READ_ATTEMPTS):
            before = SourceMark.of(source)
            if store.source() == before:  # another process brought it up to date while this one waited
                return False
            order, _read_count, new = _read(store, source, progress, cancel)
            if SourceMark.of(source) == before:
                break
        if not order:
            raise InputError("the collection has no records")
        removed = [_removed_entry(document) for document in store.documents_not_in(order)]
        first_build = store.source() is None
        store.publish(Publication(order=order, source=before, removed=removed,
                                  new_documents=0 if first_build else new, seconds=time.perf_counter() - started))
        return True


def _build_lock_or_none(store: Store, wait: float,
                        cancel: threading.Event | None) -> contextlib.AbstractContextManager[None] | None:
    """The build lock of a shared store, or None when another process holds it and something is
    searchable already: replicas do not queue behind one build, they answer from what it has
    committed (the previous version during an update, the batches so far during a first build) and
    the notes say so. With nothing searchable yet, the call waits for the first batch or the lock."""
    deadline = time.monotonic() + wait
    while True:
        stack = contextlib.ExitStack()
        try:
            stack.enter_context(store.build_lock(0, cancel))
            return stack
        except TimedOut:
            if store.state().documents > 0:
                return None
            if cancel is not None and cancel.is_set():
                raise Cancelled("the call was cancelled while another process was building this collection's "
                                "index") from None
            if time.monotonic() >= deadline:
                raise
            time.sleep(SHARED_POLL)


def build_vectors(store: Store, load: Callable[[], Embedder | None], stop: Callable[[], bool] = lambda: False,
                  on_batch: Callable[[int], None] | None = None) -> bool:
    """Vectors (of the title and the chunk's text) for every chunk that has none. The embedder is
    loaded only when there is work, so a process that finds the vectors complete never loads a
    model. Returns False when `stop` asked it to stop before the end."""
    model: Embedder | None = None
    limit = VECTOR_BATCH
    while rows := store.texts_to_embed(limit):
        if stop():
            return False
        if model is None:
            model = load()
            if model is None:
                return True
            # A remote embedder keeps many requests in flight: hand it enough texts at a time that
            # its pipeline does not drain at every step.
            limit = max(limit, getattr(model, "rows_per_call", limit))
        texts = [f"{title}\n{text}" for _row, title, text in rows]
        store.add_vectors([row for row, _title, _text in rows], model.embed(texts))
        if on_batch is not None:
            on_batch(len(rows))
    return True

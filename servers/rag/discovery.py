"""Finding the collections under the allowed roots, so an agent need not guess `json_path`.

A bounded walk: breadth first (shallow files are found first when a cap stops it), at most
MAX_DEPTH folders deep, MAX_ENTRIES directory entries and MAX_SECONDS of walking, MAX_FOUND
collections. Symbolic links to folders are never followed (no cycles, no way out of a root); a
linked file is listed only when its target is inside the allowed roots. Hidden folders, virtual
environments, node_modules and the suite's own cache are skipped. A `.json`, `.jsonl` or `.ndjson`
file is a collection when its first record, read from the first MB, is an object with a body
(`content`, `page_body` or `text`) or a `title`. Records are counted only where that is cheap: JSON
Lines by their lines, JSON files up to COUNT_MAX_BYTES, within COUNT_SECONDS for the whole listing.
"""

from __future__ import annotations

import io
import json
import os
import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from servers.rag.loader import BODY_FIELDS

EXTENSIONS = (".json", ".jsonl", ".ndjson")
SKIPPED_FOLDERS = {"node_modules", "__pycache__", "site-packages", "venv", "env"}
MAX_DEPTH = 6
MAX_ENTRIES = 20_000
MAX_SECONDS = 3.0
MAX_FOUND = 200
HEAD_BYTES = 2**20  # a first record longer than this is not recognised
COUNT_MAX_BYTES = 32 * 2**20
COUNT_SECONDS = 5.0

FORMATS = {"array": "JSON array", "documents": "JSON object with a documents array", "lines": "JSON Lines"}


@dataclass(frozen=True)
class Candidate:
    path: Path  # as reached under its root (a linked file keeps its link's path)
    format: str  # a key of FORMATS
    size: int
    mtime: float


@dataclass(frozen=True)
class Walk:
    found: list[Candidate]
    entries: int  # directory entries looked at
    stopped: str | None  # which cap ended the walk early, if one did


def _looks_like_record(value: Any) -> bool:
    return isinstance(value, dict) and any(key in value for key in (*BODY_FIELDS, "title"))


def sniff(path: Path) -> str | None:
    """The collection format of `path` (a key of FORMATS), or None when it does not look like one."""
    import ijson

    try:
        with open(path, "rb") as handle:
            head = handle.read(HEAD_BYTES)
    except OSError:
        return None
    stripped = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if not stripped[:1] or stripped[:1] not in b"[{":
        return None
    if stripped[:1] == b"{":
        line = stripped.split(b"\n", 1)[0]
        try:
            first = json.loads(line)
        except ValueError:
            first = None
        if _looks_like_record(first) and "documents" not in first:
            return "lines"
        prefix, kind = "documents.item", "documents"
    else:
        prefix, kind = "item", "array"
    try:
        for item in ijson.items(io.BytesIO(stripped), prefix, use_float=True):
            return kind if _looks_like_record(item) else None
    except (ijson.JSONError, ijson.IncompleteJSONError, ValueError):
        return None  # the first record does not fit in the head, or the file is not JSON
    return None


def count_records(candidate: Candidate, seconds: float) -> int | None:
    """How many records the file has, when that can be known within `seconds`."""
    import ijson

    deadline = time.monotonic() + seconds
    try:
        with open(candidate.path, "rb") as handle:
            if candidate.format == "lines":
                count = 0
                for count_lines, line in enumerate(handle):
                    if line.strip():
                        count += 1
                    if count_lines % 4096 == 0 and time.monotonic() > deadline:
                        return None
                return count
            if candidate.size > COUNT_MAX_BYTES:
                return None
            prefix = "item" if candidate.format == "array" else "documents.item"
            count = 0
            for _record in ijson.items(handle, prefix, use_float=True):
                count += 1
                if count % 256 == 0 and time.monotonic() > deadline:
                    return None
            return count
    except (OSError, ijson.JSONError, ijson.IncompleteJSONError, ValueError):
        return None


def _inside(path: Path, roots: list[Path]) -> bool:
    return any(path == root or path.is_relative_to(root) for root in roots)


def walk(starts: list[Path], roots: list[Path], skip: list[Path]) -> Walk:
    """Collections under `starts` (folders inside `roots`), skipping the folders in `skip`."""
    deadline = time.monotonic() + MAX_SECONDS
    queue: deque[tuple[Path, int]] = deque((start, 0) for start in starts)
    seen_folders: set[Path] = set()
    seen_files: set[Path] = set()
    found: list[Candidate] = []
    entries = 0
    while queue:
        folder, depth = queue.popleft()
        real = Path(os.path.realpath(folder))
        if real in seen_folders or real in skip:
            continue
        seen_folders.add(real)
        try:
            with os.scandir(folder) as listing:
                items = sorted(listing, key=lambda item: item.name)
        except OSError:
            continue
        for item in items:
            entries += 1
            if entries > MAX_ENTRIES:
                return Walk(found, entries - 1, f"{MAX_ENTRIES:,} entries")
            if entries % 256 == 0 and time.monotonic() > deadline:
                return Walk(found, entries, f"{MAX_SECONDS:.0f} s")
            if item.name.startswith("."):
                continue
            try:
                if item.is_dir(follow_symlinks=False):
                    if depth + 1 <= MAX_DEPTH and item.name not in SKIPPED_FOLDERS:
                        queue.append((Path(item.path), depth + 1))
                    continue
                if not item.name.lower().endswith(EXTENSIONS):
                    continue
                target = Path(os.path.realpath(item.path))
                if (item.is_symlink() and not _inside(target, roots)) or not target.is_file() or target in seen_files:
                    continue
                info = target.stat()
            except OSError:
                continue
            kind = sniff(target)
            if kind is None:
                continue
            seen_files.add(target)
            found.append(Candidate(Path(item.path), kind, info.st_size, info.st_mtime))
            if len(found) >= MAX_FOUND:
                return Walk(found, entries, f"{MAX_FOUND} collections")
    return Walk(found, entries, None)

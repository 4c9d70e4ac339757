"""Sandboxes a service lost when it stopped before they expired (SIGTERM, killed, crashed, machine reset).

A sandbox's host folder lives exactly as long as the sandbox: removed with it, by expiry or on
request. So a folder found when a service starts (it holds the configuration's lock, so no other
service is using it) belonged to one that died, and its sandbox died with it (bubblewrap ends a
sandbox whose parent is gone). Its id is written down here, so that a call with it is told the
sandbox was lost, rather than that it never existed; a service ended by SIGTERM writes down its live
sandboxes itself. Entries are kept for a day.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import time
from collections.abc import Callable
from pathlib import Path

log = logging.getLogger("toolsuite.sandbox.lost")

KEEP_SECONDS = 86400.0
ID_SHAPE = re.compile(r"sbx_[A-Za-z0-9_-]{24}")


class LostSandboxes:
    def __init__(self, folder: Path) -> None:
        self.folder = folder / "lost"
        self.folder.mkdir(mode=0o700, exist_ok=True)

    def knows(self, sandbox_id: str) -> bool:
        # Only a well-formed id becomes a file name: nothing an agent types can walk the folder.
        return ID_SHAPE.fullmatch(sandbox_id) is not None and (self.folder / sandbox_id).exists()

    def remember(self, ids: list[str]) -> None:
        for sandbox_id in ids:
            if ID_SHAPE.fullmatch(sandbox_id):
                (self.folder / sandbox_id).touch()

    def recover(self, base: Path, remove_leftovers: Callable[[str], None] | None = None) -> list[str]:
        """Write down and clear every sandbox folder left in `base`; returns their ids."""
        found = []
        for entry in base.iterdir():
            if ID_SHAPE.fullmatch(entry.name) and entry.is_dir() and not entry.is_symlink():
                self.remember([entry.name])
                shutil.rmtree(entry, ignore_errors=True)
                if remove_leftovers is not None:
                    remove_leftovers(entry.name)
                found.append(entry.name)
        if found:
            log.warning("%d sandbox(es) of an earlier sandbox service were lost when it stopped", len(found))
        self._prune()
        return found

    def _prune(self) -> None:
        cutoff = time.time() - KEEP_SECONDS
        for entry in self.folder.iterdir():
            with contextlib.suppress(OSError):
                if entry.stat().st_mtime < cutoff:
                    os.unlink(entry)

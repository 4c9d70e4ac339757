"""Heavy engines (onnxruntime, faster-whisper, cv2, models) load on first use, once per process."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from shared.errors import NotConfigured

T = TypeVar("T")


class LazyEngine(Generic[T]):
    """Loads an engine the first time `get()` is called and keeps it for the life of the process.

    A missing module becomes `NotConfigured` with the install hint; a load that failed for another
    reason is remembered, so every later call gets the same clear error without retrying the load.
    """

    def __init__(self, name: str, loader: Callable[[], T], install_hint: str) -> None:
        self.name = name
        self._loader = loader
        self._install_hint = install_hint
        self._lock = threading.Lock()
        self._value: T | None = None
        self._error: Exception | None = None
        self.loads = 0

    def get(self) -> T:
        if self._value is not None:
            return self._value
        with self._lock:
            if self._value is None:
                if self._error is not None:
                    raise self._error
                try:
                    self.loads += 1
                    self._value = self._loader()
                except ModuleNotFoundError as exc:
                    self._error = NotConfigured(
                        f"{self.name} is not available: module {exc.name!r} is not installed; {self._install_hint}"
                    )
                    raise self._error from None
                except NotConfigured as exc:
                    self._error = exc
                    raise
        return self._value

"""tool-rag with a stand-in embedder: the tests' way to control what the vector build sees."""

from __future__ import annotations

from typing import Any

import pytest

from servers.rag import embedders, indexing


def embed_in_process(monkeypatch: pytest.MonkeyPatch, model: Any, batch: int | None = None) -> None:
    """Build chunk vectors with `model`, in a thread of this process (a detached builder process would
    not see a stand-in), `batch` chunks at a time when given."""
    monkeypatch.setenv("TOOLSUITE_RAG_BUILDER", "thread")
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "openai")  # any embedder but none: `get` is replaced
    monkeypatch.setattr(embedders, "get", lambda name: model)
    if batch is not None:
        monkeypatch.setattr(indexing, "VECTOR_BATCH", batch)

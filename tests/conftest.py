from __future__ import annotations

import os
import sys
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.fake_openai import FakeOpenAI

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent

_MODEL_VARIABLES = [
    name
    for name in os.environ
    if name.startswith(("TOOLSUITE_", "OPENAI_", "VISION_", "REASONING_", "WHISPER_", "EMBEDDING_", "AUDIO_",
                        "ANTHROPIC_", "VLLM_"))
]


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Speech models shipped in parts are assembled once per test session (145 MB), not once per test."""
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, models_dir: Path) -> Iterator[None]:
    """Each test starts with no model configured, its own cache and its own allowed root."""
    for name in _MODEL_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    root = tmp_path / "root"
    root.mkdir()
    monkeypatch.setenv("TOOLSUITE_ROOTS", str(root))
    monkeypatch.setenv("TOOLSUITE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("TOOLSUITE_MODELS_DIR", str(models_dir))
    yield


@pytest.fixture
def setenv(monkeypatch: pytest.MonkeyPatch) -> Callable[..., None]:
    """`setenv(NAME="value", ...)`: several environment variables for this test at once."""

    def put(**values: str) -> None:
        for name, value in values.items():
            monkeypatch.setenv(name, value)

    return put


@pytest.fixture
def lexical_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """tool-rag without vectors: lexical search (with dictionary translation) only."""
    monkeypatch.setenv("TOOLSUITE_RAG_EMBEDDER", "none")


@pytest.fixture
def root(tmp_path: Path) -> Path:
    return tmp_path / "root"


@pytest.fixture
def temp_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Temporary files of this test land here, so a leaked one is seen."""
    folder = tmp_path / "tmp"
    folder.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(folder))
    return folder


@pytest.fixture
def fake_openai() -> Iterator[FakeOpenAI]:
    server = FakeOpenAI().start()
    yield server
    server.stop()


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def model_role(monkeypatch: pytest.MonkeyPatch, fake_openai: FakeOpenAI) -> Callable[..., FakeOpenAI]:
    """Points a model role at the fake server: `model_role("VISION", "fake-vision", api_key=...)`."""

    def point(role: str, model: str, api_key: str | None = None) -> FakeOpenAI:
        monkeypatch.setenv(f"TOOLSUITE_{role}_BASE_URL", fake_openai.base_url)
        monkeypatch.setenv(f"TOOLSUITE_{role}_MODEL", model)
        if api_key:
            monkeypatch.setenv(f"TOOLSUITE_{role}_API_KEY", api_key)
        return fake_openai

    return point


@pytest.fixture
def vision(monkeypatch: pytest.MonkeyPatch, model_role: Callable[..., FakeOpenAI]) -> FakeOpenAI:
    """A vision model role pointing at the fake server, without retries."""
    monkeypatch.setenv("TOOLSUITE_MODEL_RETRIES", "0")
    return model_role("VISION", "fake-vision")


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[object]:
    """One real PostgreSQL with pgvector for the session (tests/pg_server.py). Missing `pgserver`
    skips these tests on a developer's machine and fails them on CI, where they must run."""
    from tests import pg_server

    if not pg_server.available():
        message = "pgserver is not installed (pip install -e '.[dev]'): the PostgreSQL store is not tested"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    server = pg_server.LocalPostgres().start()
    yield server
    server.cleanup()


_databases = iter(range(1, 1_000_000))


@pytest.fixture
def pg_url(postgres_server, monkeypatch: pytest.MonkeyPatch) -> str:
    """A fresh database with pgvector, named in TOOLSUITE_RAG_STORE for this test."""
    url = postgres_server.create_database(f"test_{os.getpid()}_{next(_databases)}")
    monkeypatch.setenv("TOOLSUITE_RAG_STORE", url)
    return url

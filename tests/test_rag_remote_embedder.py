"""Wire-format checks of tool-rag's client for OpenAI-compatible embeddings endpoints, against the
fake endpoint on 127.0.0.1 (they check our requests and decoding, not model quality)."""

from __future__ import annotations

import base64
import json
import threading

import pytest

from servers.rag import embedders, remote_embedder
from servers.rag.numeric import numpy
from shared.errors import RemoteError
from tests.fake_openai import Scripted


@pytest.fixture
def endpoint(monkeypatch, fake_openai):
    monkeypatch.setenv("TOOLSUITE_EMBEDDING_BASE_URL", fake_openai.base_url)
    monkeypatch.setenv("TOOLSUITE_EMBEDDING_MODEL", "fake-embed")
    monkeypatch.setenv("TOOLSUITE_MODEL_RETRIES", "0")
    monkeypatch.setattr(remote_embedder, "_SHARED", {})
    return fake_openai


def test_requests_are_batched_concurrent_and_ask_for_base64(endpoint, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBED_BATCH", "8")
    monkeypatch.setenv("TOOLSUITE_RAG_EMBED_CONCURRENCY", "3")
    model = embedders.get("openai")
    vectors = model.embed([f"text {i}" for i in range(100)])
    bodies = [r.json() for r in endpoint.requests if r.path.endswith("/embeddings")]
    assert sorted(len(b["input"]) for b in bodies) == [4] + [8] * 12
    assert {b["encoding_format"] for b in bodies} == {"base64"} and {b["model"] for b in bodies} == {"fake-embed"}
    assert vectors.shape == (100, endpoint.embedding_dim) and vectors.dtype == numpy().float32
    assert numpy().allclose(numpy().linalg.norm(vectors, axis=1), 1.0)
    assert embedders.get("openai") is model  # one client (one loop, kept-alive connections) per process


def test_the_client_serves_several_threads_at_once(endpoint):
    model = embedders.get("openai")
    results: dict[int, tuple[int, int]] = {}

    def work(number: int) -> None:
        results[number] = model.embed([f"thread {number} text {i}" for i in range(20)]).shape

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {n: (20, endpoint.embedding_dim) for n in range(4)}


def test_a_batch_larger_than_the_endpoint_takes_is_split_and_remembered(endpoint, monkeypatch):
    monkeypatch.setenv("TOOLSUITE_RAG_EMBED_BATCH", "10")
    monkeypatch.setenv("TOOLSUITE_RAG_EMBED_CONCURRENCY", "1")
    endpoint.script.append(Scripted(status=422, body={"error": "batch size 10 > maximum allowed batch size 4",
                                                      "error_type": "Validation"}))
    model = embedders.get("openai")
    assert model.embed([f"t{i}" for i in range(10)]).shape[0] == 10
    sizes = [len(r.json()["input"]) for r in endpoint.requests]
    assert sizes == [10, 4, 4, 2] and model.batch == 4
    endpoint.requests.clear()
    model.embed([f"u{i}" for i in range(8)])
    assert [len(r.json()["input"]) for r in endpoint.requests] == [4, 4]


def test_base64_and_float_answers_decode_alike_and_bad_answers_are_refused():
    np = numpy()
    rows = np.array([[1.0, 2.0, 3.0], [4.0, 5.0, 6.5]], dtype=np.float32)
    packed = {"data": [{"index": i, "embedding": base64.b64encode(r.tobytes()).decode()} for i, r in enumerate(rows)]}
    floats = {"data": [{"index": 1, "embedding": rows[1].tolist()}, {"index": 0, "embedding": rows[0].tolist()}]}
    assert np.array_equal(remote_embedder.decode(json.dumps(packed).encode(), 2), rows)
    assert np.array_equal(remote_embedder.decode(json.dumps(floats).encode(), 2), rows)  # index order kept
    for body, message in ((json.dumps(floats).encode(), "returned 2 vectors for 3 inputs"),
                          (b"<html>busy</html>", "not an embeddings response"),
                          (json.dumps({"data": [{"embedding": [1, 2]}, {"embedding": [1]}]}).encode(),
                           "different sizes")):
        with pytest.raises(RemoteError, match=message):
            remote_embedder.decode(body, 3 if "2 vectors" in message else 2)


def test_a_zero_vector_is_refused(endpoint, monkeypatch):
    np = numpy()
    zero = base64.b64encode(np.zeros(4, dtype=np.float32).tobytes()).decode()
    endpoint.script.append(Scripted(body={"data": [{"index": 0, "embedding": zero}]}))
    with pytest.raises(RemoteError, match="zero or NaN vector"):
        embedders.get("openai").embed(["x"])

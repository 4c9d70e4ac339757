"""The calls tests/test_host_compat.py and bench/host_calls.py make the host's way, and where they run.

One case per tool of every server (plus a failure per server), on the committed fixtures, with each
server's model settings written as an operator writes them into the host's configuration.
"""

from __future__ import annotations

import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.fake_openai import FakeOpenAI
from tests.host_client import HostCall, host_call

BIN = Path(sys.executable).parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
FAKE_KEY = "sk-host-compat-fake-key"


@dataclass(frozen=True)
class Case:
    server: str
    tool: str
    arguments: dict[str, Any]
    expect: str | None = None  # a fragment the host-visible text must hold
    error: bool = False  # a failure: the text must start with the server's marker
    env: dict[str, str] | None = None  # replaces the server's configured model settings

    @property
    def id(self) -> str:
        return f"{self.server}/{self.tool}" + ("/error" if self.error else "")


GHOST = "sbx-does-not-exist"  # an id no sandbox has

CASES: tuple[Case, ...] = (
    Case("tool-rag", "rag_search", {"query": "直播 平台责任", "json_path": "collection.json", "top_k": 3},
         "Source File: collection.json"),
    Case("tool-rag", "rag_get_context", {"query": "直播电商", "json_path": "collection.json", "max_tokens": 1000},
         "=== RAG Context for Query ==="),
    Case("tool-rag", "rag_document_stats", {"json_path": "collection.json"}, "Documents: 6"),
    Case("tool-rag", "rag_get_document", {"json_path": "collection.json", "document_index": 0, "max_chars": 200},
         "Document Index: 0"),
    Case("tool-rag", "rag_get_neighbours", {"json_path": "collection.json", "document_index": 0, "chunk_index": 0},
         '[long_context: "直播电商监督管理办法解读", chunk 0]'),
    Case("tool-rag", "rag_list_collections", {}, "collection.json"),
    Case("tool-rag", "rag_search", {"query": "x", "json_path": "missing.json"}, "not found", error=True),
    Case("tool-reader", "convert_to_markdown", {"uri": "report.pdf", "pages": "1"}, "page 1"),
    Case("tool-reader", "document_info", {"uri": "report.pdf"}, "Pages: 3"),
    Case("tool-reader", "convert_to_markdown", {"uri": "missing.pdf"}, "not found", error=True),
    Case("tool-python", "create_sandbox", {}, "sandbox"),
    Case("tool-python", "run_python_code", {"code_block": "6 * 7", "sandbox_id": GHOST}, "no such sandbox", True),
    Case("tool-python", "run_command", {"command": "echo hi", "sandbox_id": GHOST}, "no such sandbox", True),
    Case("tool-python", "upload_file_from_local_to_sandbox",
         {"sandbox_id": GHOST, "local_file_path": "collection.json"}, "no such sandbox", True),
    Case("tool-python", "download_file_from_internet_to_sandbox",
         {"sandbox_id": GHOST, "url": "https://example.org/data.csv"}, "no such sandbox", True),
    Case("tool-python", "download_file_from_sandbox_to_local",
         {"sandbox_id": GHOST, "sandbox_file_path": "/home/user/out.txt"}, "no such sandbox", True),
    Case("tool-vqa", "visual_question_answering", {"image_path_or_url": "sign.png", "question": "What does it say?"},
         "fake answer"),
    Case("tool-vqa", "visual_question_answering", {"image_path_or_url": "missing.png", "question": "What?"},
         "not found", error=True),
    Case("tool-vqa-enhanced", "vision_understanding_advanced",
         {"image_path_or_url": "sign.png", "question": "What does it say?"}, "fake answer"),
    Case("tool-vqa-enhanced", "vision_quick_answer", {"image_path_or_url": "sign.png", "question": "Colours?"},
         "fake answer"),
    Case("tool-vqa-enhanced", "vision_extract_metadata", {"image_path_or_url": "sign.png"}, "Local evidence"),
    Case("tool-vqa-enhanced", "vision_comparative_analysis",
         {"image_path_or_url_1": "sign.png", "image_path_or_url_2": "sign.png", "comparison_question": "Same?"},
         "fake answer"),
    Case("tool-transcribe", "audio_transcription", {"audio_path_or_url": "speech.ogg"}, "[00:00"),
    Case("tool-transcribe", "audio_question_answering", {"audio_path_or_url": "speech.ogg", "question": "Topic?"},
         "fake answer"),
    Case("tool-transcribe", "audio_transcription", {"audio_path_or_url": "missing.ogg"}, "not found", error=True),
    Case("tool-audio-enhanced", "audio_understanding_advanced", {"audio_path_or_url": "speech.ogg",
                                                                 "question": "Topic?"}, "fake answer"),
    Case("tool-audio-enhanced", "audio_quick_transcription", {"audio_path_or_url": "speech.ogg"}, "[00:00"),
    Case("tool-audio-enhanced", "audio_extract_metadata", {"audio_path_or_url": "speech.ogg"}, "ogg"),
    Case("tool-audio-enhanced", "audio_question_answering_enhanced",
         {"audio_path_or_url": "speech.ogg", "question": "Topic?"}, "fake answer"),
    Case("tool-video-enhanced", "video_extract_keyframes", {"video_path": "clip.mp4", "max_keyframes": 3}, "ALPHA"),
    Case("tool-video-enhanced", "video_quick_analysis", {"video_path": "clip.mp4"}, "fake answer"),
    Case("tool-video-enhanced", "video_understanding_advanced", {"video_path": "clip.mp4", "question": "What?"},
         "fake answer"),
    Case("tool-video-enhanced", "video_temporal_qa",
         {"video_path": "clip.mp4", "question": "What?", "start_time": 0, "end_time": 2}, "fake answer"),
    Case("tool-reasoning", "reasoning", {"question": "Is 2^31-1 prime?"}, "fake answer"),
    # As the host runs it when no Anthropic key reached the process: the model must see it failed.
    Case("tool-reasoning", "reasoning", {"question": "Is 2^31-1 prime?"}, "no reasoning model configured",
         error=True, env={}),
)


def model_settings(server: str, fake_url: str) -> dict[str, str]:
    """Each server's model settings as an operator writes them into the host's configuration: the host's
    own names where the host passes some (its settings.py), else ours."""
    bare = fake_url.removesuffix("/v1")  # ANTHROPIC_BASE_URL is given without /v1, as the host does
    ours = {"TOOLSUITE_MODEL_RETRIES": "0"}
    if server in ("tool-reasoning", "tool-vqa"):
        return {**ours, "ANTHROPIC_API_KEY": FAKE_KEY, "ANTHROPIC_BASE_URL": bare}
    if server == "tool-vqa-enhanced":
        return {**ours, "VLLM_PROVIDER": "openai", "VLLM_API_KEY": FAKE_KEY, "VLLM_BASE_URL": fake_url,
                "VLLM_MODEL": "fake-vision"}
    if server == "tool-video-enhanced":
        return {**ours, "TOOLSUITE_VISION_BASE_URL": fake_url, "TOOLSUITE_VISION_MODEL": "fake-vision"}
    if server == "tool-transcribe":  # the host passes OPENAI_*; the chat model is named by us
        return {**ours, "OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": fake_url, "TOOLSUITE_AUDIO_MODEL": "fake-chat"}
    if server == "tool-audio-enhanced":
        return {**ours, "TOOLSUITE_AUDIO_BASE_URL": fake_url, "TOOLSUITE_AUDIO_MODEL": "fake-chat"}
    if server == "tool-rag":
        return {**ours, "OPENAI_API_KEY": FAKE_KEY, "OPENAI_BASE_URL": fake_url}
    return ours


@dataclass
class HostRun:
    root: Path
    cache: Path
    fake_url: str = "http://127.0.0.1:9/v1"  # nothing listens there unless a fake model is started
    fake: FakeOpenAI | None = None
    calls: dict[str, HostCall] = field(default_factory=dict)
    listings: dict[str, dict[str, Any]] = field(default_factory=dict)

    def env(self, server: str, models: dict[str, str] | None = None) -> dict[str, str]:
        # The sandbox service of the run keeps its socket and sandboxes in the run's own folder.
        base = {"TOOLSUITE_ROOTS": str(self.root), "TOOLSUITE_CACHE_DIR": str(self.cache),
                "TOOLSUITE_OUTPUT_DIR": str(self.root / "out"),
                "TOOLSUITE_SANDBOX_DIR": str(self.cache.parent / "sandboxes")}
        return {**base, **(model_settings(server, self.fake_url) if models is None else models)}

    async def call(self, case: Case) -> HostCall:
        env = self.env(case.server, None if case.env is None else {"TOOLSUITE_MODEL_RETRIES": "0", **case.env})
        return await host_call(str(BIN / case.server), case.tool, case.arguments, env, cwd=self.root)


def make_root(base: Path) -> tuple[Path, Path]:
    root, cache = base / "root", base / "cache"
    root.mkdir(parents=True)
    for name in ("collection.json", "report.pdf", "sign.png", "speech.ogg", "clip.mp4"):
        shutil.copy(FIXTURES / name, root / name)
    return root, cache

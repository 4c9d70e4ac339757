"""Everything that decides what one sandbox is, read from the settings of the server that asks for it.

A sandbox is made to the settings of the server that created it, whichever process runs it: the
server reads them here and sends them with `create`, and the sandbox keeps them for its whole life
(restarts included). So the sandbox service, which outlives servers and is shared by them, never
applies one server's settings to another's sandboxes. What is on the wire is checked field by
field on the way in (`from_wire`).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import asdict, dataclass, fields
from typing import Any

from servers.python import bwrap
from servers.python.limits import SandboxLimits, cgroups_enabled
from shared import settings
from shared.errors import NotConfigured

ISOLATIONS = ("bwrap", "process")
MAX_PATH = 4096
MAX_LIMIT = 2**31 - 1


def isolation_mode() -> str:
    mode = settings.text("TOOLSUITE_SANDBOX_ISOLATION", "bwrap").lower()
    if mode not in ISOLATIONS:
        raise NotConfigured(f"TOOLSUITE_SANDBOX_ISOLATION={mode!r} is not one of: bwrap, process")
    return mode


@dataclass(frozen=True)
class SandboxConfig:
    isolation: str  # "bwrap" (namespaces) or "process" (the operator's weaker choice)
    bwrap: str | None  # the bubblewrap program found on the server's PATH (None: not installed)
    network: bool
    python: str  # the interpreter run inside
    cgroups: bool  # per-sandbox cgroups wanted (used where the host allows)
    limits: SandboxLimits

    @classmethod
    def from_settings(cls) -> SandboxConfig:
        return cls(isolation=isolation_mode(), bwrap=bwrap.bwrap_path(), network=bwrap.network_allowed(),
                   python=_absolute_python(), cgroups=cgroups_enabled(), limits=SandboxLimits.from_settings())

    def to_wire(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_wire(cls, raw: object) -> SandboxConfig:
        """The config in `raw`, or ValueError saying which field is wrong."""
        if not isinstance(raw, dict) or set(raw) != {f.name for f in fields(cls)}:
            raise ValueError("config has other fields than expected")
        if raw["isolation"] not in ISOLATIONS:
            raise ValueError("config.isolation is not bwrap or process")
        if raw["bwrap"] is not None and not _path(raw["bwrap"]):
            raise ValueError("config.bwrap is not a path")
        if not _path(raw["python"]):
            raise ValueError("config.python is not a path")
        if not isinstance(raw["network"], bool) or not isinstance(raw["cgroups"], bool):
            raise ValueError("config.network and config.cgroups must be true or false")
        limits = raw["limits"]
        names = {f.name for f in fields(SandboxLimits)}
        if not isinstance(limits, dict) or set(limits) != names or not all(
                isinstance(v, int) and not isinstance(v, bool) and 0 < v <= MAX_LIMIT for v in limits.values()):
            raise ValueError("config.limits must give every limit as a positive whole number")
        return cls(isolation=raw["isolation"], bwrap=raw["bwrap"], network=raw["network"], python=raw["python"],
                   cgroups=raw["cgroups"], limits=SandboxLimits(**limits))


def _absolute_python() -> str:
    """The sandbox's interpreter as an absolute path: the service runs it, with a PATH of its own."""
    python = bwrap.sandbox_python()
    if python.startswith("/"):
        return python
    found = shutil.which(python)
    if found is None:
        raise NotConfigured(f"TOOLSUITE_SANDBOX_PYTHON={python!r} is neither an absolute path nor a program on PATH")
    return os.path.abspath(found)


def _path(value: object) -> bool:
    return isinstance(value, str) and value.startswith("/") and 0 < len(value) <= MAX_PATH and "\x00" not in value

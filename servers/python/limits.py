"""Resource limits for one sandbox: rlimits always, cgroups (pids, memory) where the host allows.

rlimits alone cannot stop a fork bomb when the server runs as root (RLIMIT_NPROC does not apply to
root's processes, and a user namespace maps the sandbox user to root outside), so a per-sandbox
cgroup with `pids.max` and a memory limit is used when the cgroup filesystem is writable (cgroup
v2, or v1 with the pids and memory controllers). Which limits are active is reported to the agent.
"""

from __future__ import annotations

import contextlib
import logging
import os
import resource
import signal
from dataclasses import dataclass, field
from pathlib import Path

from shared import settings

log = logging.getLogger("toolsuite.sandbox.limits")
CGROUP_ROOT = Path("/sys/fs/cgroup")


@dataclass(frozen=True)
class SandboxLimits:
    memory_mb: int
    processes: int
    open_files: int
    file_size_mb: int
    cpu_seconds_per_call: int
    wall_seconds_per_call: int
    cpu_seconds_total: int
    output_chars: int
    home_quota_mb: int

    @classmethod
    def from_settings(cls) -> SandboxLimits:
        def n(name: str, default: float, minimum: float = 1) -> int:
            return int(settings.number(name, default, minimum=minimum))

        wall = n("TOOLSUITE_SANDBOX_CALL_TIMEOUT", 120)
        return cls(
            memory_mb=n("TOOLSUITE_SANDBOX_MEMORY_MB", 2048, 64),
            processes=n("TOOLSUITE_SANDBOX_MAX_PROCESSES", 64, 4),
            open_files=256,
            file_size_mb=n("TOOLSUITE_SANDBOX_FILE_SIZE_MB", 200),
            cpu_seconds_per_call=wall,
            wall_seconds_per_call=wall,
            cpu_seconds_total=max(3600, wall * 10),
            output_chars=50_000,
            home_quota_mb=n("TOOLSUITE_SANDBOX_HOME_QUOTA_MB", 1024),
        )

    def describe(self) -> dict[str, int]:
        return {
            "memory_mb": self.memory_mb,
            "processes": self.processes,
            "open_files": self.open_files,
            "file_size_mb": self.file_size_mb,
            "wall_seconds_per_call": self.wall_seconds_per_call,
            "cpu_seconds_per_call": self.cpu_seconds_per_call,
            "home_quota_mb": self.home_quota_mb,
        }


def apply_rlimits(limits: SandboxLimits) -> None:
    """Runs in the child between fork and exec (preexec_fn): must not allocate much or log."""
    mb = 1024 * 1024
    # Address space is set above the memory budget: numeric libraries reserve far more virtual
    # memory than they touch; the cgroup (when present) is the real memory limit.
    address_space = max(limits.memory_mb * mb * 2, 1024 * mb)
    resource.setrlimit(resource.RLIMIT_AS, (address_space, address_space))
    resource.setrlimit(resource.RLIMIT_CPU, (limits.cpu_seconds_total, limits.cpu_seconds_total + 5))
    resource.setrlimit(resource.RLIMIT_FSIZE, (limits.file_size_mb * mb, limits.file_size_mb * mb))
    resource.setrlimit(resource.RLIMIT_NOFILE, (limits.open_files, limits.open_files))
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    with contextlib.suppress(ValueError, OSError):
        resource.setrlimit(resource.RLIMIT_NPROC, (limits.processes, limits.processes))
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)


@dataclass
class CgroupSet:
    """The per-sandbox cgroup directories that were created (possibly none)."""

    directories: list[Path] = field(default_factory=list)
    active: list[str] = field(default_factory=list)

    def join(self) -> None:
        """Runs in the child (preexec_fn): move this process into every cgroup."""
        pid = str(os.getpid()).encode()
        for directory in self.directories:
            fd = os.open(directory / "cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def kill_all(self) -> None:
        for directory in self.directories:
            with contextlib.suppress(OSError):
                for line in (directory / "cgroup.procs").read_text().split():
                    with contextlib.suppress(ProcessLookupError, ValueError):
                        os.kill(int(line), signal.SIGKILL)

    def remove(self) -> None:
        self.kill_all()
        for directory in self.directories:
            for _ in range(50):
                try:
                    directory.rmdir()
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    import time

                    time.sleep(0.02)


def _own_cgroup_v1(controller: str) -> Path | None:
    base = CGROUP_ROOT / controller
    if not (base / "cgroup.procs").exists():
        return None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            _id, controllers, path = line.split(":", 2)
            if controller in controllers.split(","):
                return base / path.lstrip("/")
    except OSError:
        return None
    return base


def _own_cgroup_v2() -> Path | None:
    controllers = CGROUP_ROOT / "cgroup.controllers"
    if not controllers.exists():
        return None
    try:
        for line in Path("/proc/self/cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return CGROUP_ROOT / line[3:].lstrip("/")
    except OSError:
        return None
    return None


def cgroup_support() -> list[str]:
    """Which per-sandbox cgroup limits this host would allow (checked without creating anything)."""
    v2 = _own_cgroup_v2()
    if v2 is not None:
        control = v2 / "cgroup.subtree_control"
        available = control.read_text() if control.exists() else ""
        usable = [c for c in ("pids", "memory") if c in available]
        return usable if os.access(v2, os.W_OK) else []
    usable = []
    for controller in ("pids", "memory"):
        parent = _own_cgroup_v1(controller)
        if parent is not None and os.access(parent, os.W_OK):
            usable.append(controller)
    return usable


def remove_leftover_cgroups(prefix: str) -> None:
    """Remove the cgroups named `prefix...` under this process's own (those of a sandbox whose
    service died; killing what is left in them first)."""
    parents = [p for p in [_own_cgroup_v2()] if p is not None]
    parents += [p for p in (_own_cgroup_v1(c) for c in ("pids", "memory")) if p is not None]
    for parent in parents:
        with contextlib.suppress(OSError):
            leftovers = [d for d in parent.iterdir() if d.is_dir() and d.name.startswith(prefix)]
            CgroupSet(leftovers).remove()


def cgroups_enabled() -> bool:
    """TOOLSUITE_SANDBOX_CGROUPS: `auto` (use them where the host allows) unless turned off."""
    return settings.text("TOOLSUITE_SANDBOX_CGROUPS", "auto").lower() not in {"0", "off", "no", "false"}


def create_cgroups(name: str, limits: SandboxLimits, enabled: bool = True) -> CgroupSet:
    """Make the sandbox's cgroups where the host allows; never fails (limits fall back to rlimits)."""
    if not enabled:
        return CgroupSet()
    result = CgroupSet()
    memory_bytes = str(limits.memory_mb * 1024 * 1024)
    v2 = _own_cgroup_v2()
    if v2 is not None:
        available = (v2 / "cgroup.subtree_control").read_text() if (v2 / "cgroup.subtree_control").exists() else ""
        if "pids" in available or "memory" in available:
            directory = v2 / name
            try:
                directory.mkdir()
                if "pids" in available:
                    (directory / "pids.max").write_text(str(limits.processes))
                    result.active.append("pids")
                if "memory" in available:
                    (directory / "memory.max").write_text(memory_bytes)
                    with contextlib.suppress(OSError):
                        (directory / "memory.swap.max").write_text("0")
                    result.active.append("memory")
                result.directories.append(directory)
                return result
            except OSError as exc:
                log.info("cgroup v2 limits unavailable (%s); using rlimits", exc)
                with contextlib.suppress(OSError):
                    directory.rmdir()
                return CgroupSet()
    for controller, limit_file, value in (("pids", "pids.max", str(limits.processes)),
                                          ("memory", "memory.limit_in_bytes", memory_bytes)):
        parent = _own_cgroup_v1(controller)
        if parent is None:
            continue
        directory = parent / name
        try:
            directory.mkdir()
            (directory / limit_file).write_text(value)
            result.directories.append(directory)
            result.active.append(controller)
        except OSError as exc:
            log.info("cgroup v1 %s limit unavailable (%s)", controller, exc)
            with contextlib.suppress(OSError):
                directory.rmdir()
    return result

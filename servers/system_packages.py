"""The system packages the suite uses, found and installed in one place.

Standard library only: `make run` and `make test` run this before the virtual environment exists
(`python3 -m servers.system_packages --for test`), `.ci/run` calls the same, and `toolsuite doctor`
reports what is missing in the same words. Idempotent: present packages are never reinstalled.
As root it installs with apt-get or dnf; otherwise it stops at once and prints the one command to run.
"""

from __future__ import annotations

import argparse
import glob
import os
import shutil
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass

TESSDATA_GLOBS = ("/usr/share/tesseract-ocr/*/tessdata", "/usr/share/tesseract/tessdata",
                  "/usr/share/tessdata", "/usr/local/share/tessdata")


def _command(name: str) -> Callable[[], bool]:
    return lambda: shutil.which(name) is not None


def _library(name: str) -> Callable[[], bool]:
    import ctypes.util

    return lambda: ctypes.util.find_library(name) is not None


def _tessdata(language: str) -> Callable[[], bool]:
    def present() -> bool:
        folders = [os.environ.get("TESSDATA_PREFIX", "")]
        for pattern in TESSDATA_GLOBS:
            folders += glob.glob(pattern)
        return any(folder and os.path.isfile(os.path.join(folder, f"{language}.traineddata")) for folder in folders)

    return present


@dataclass(frozen=True)
class SystemPackage:
    what: str
    debian: str
    fedora: str
    servers: tuple[str, ...]
    purpose: str  # "run": a server uses it; "test": only the test suite or benchmarks need it
    why: str
    present: Callable[[], bool]


OCR_SERVERS = ("tool-reader", "tool-vqa", "tool-vqa-enhanced", "tool-video-enhanced")

PACKAGES: tuple[SystemPackage, ...] = (
    SystemPackage("bubblewrap (bwrap)", "bubblewrap", "bubblewrap", ("tool-python",), "run",
                  "isolates tool-python sandboxes", _command("bwrap")),
    SystemPackage("libseccomp", "libseccomp2", "libseccomp", ("tool-python",), "run",
                  "builds the syscall filter of tool-python sandboxes", _library("seccomp")),
    SystemPackage("tesseract OCR", "tesseract-ocr", "tesseract", OCR_SERVERS, "run",
                  "the second offline OCR engine", _command("tesseract")),
    SystemPackage("tesseract Chinese (chi_sim)", "tesseract-ocr-chi-sim", "tesseract-langpack-chi_sim", OCR_SERVERS,
                  "run", "Chinese for the tesseract OCR engine", _tessdata("chi_sim")),
    SystemPackage("docker-compose", "docker-compose", "docker-compose", (), "test",
                  "validates docker-compose.yml in the tests", _command("docker-compose")),
    SystemPackage("HAProxy", "haproxy", "haproxy", (), "test",
                  "checks servers/rag/haproxy.cfg and balances tool-rag replicas in the tests and benchmarks",
                  _command("haproxy")),
    SystemPackage("flite", "flite", "flite", (), "test",
                  "speaks the held-out English voices bench/transcribe.py measures word error rates on",
                  _command("flite")),
    SystemPackage("espeak-ng", "espeak-ng", "espeak-ng", (), "test",
                  "speaks the narration of the synthetic videos bench/video.py transcribes", _command("espeak-ng")),
    SystemPackage("make", "make", "make", (), "test", "runs `make test` in .ci/run", _command("make")),
)


def missing(purpose: str = "test") -> list[SystemPackage]:
    """What is not installed among the packages needed to `run` the servers, or also to `test` them."""
    wanted = ("run",) if purpose == "run" else ("run", "test")
    return [package for package in PACKAGES if package.purpose in wanted and not package.present()]


def package_manager() -> str | None:
    for name in ("apt-get", "dnf"):
        if shutil.which(name):
            return name
    return None


def install_command(packages: list[SystemPackage], manager: str | None = None) -> str:
    """The one command that installs `packages` (with sudo when not run as root)."""
    manager = manager or package_manager() or "apt-get"
    sudo = "" if os.geteuid() == 0 else "sudo "
    if manager == "dnf":
        return f"{sudo}dnf install -y {' '.join(p.fedora for p in packages)}"
    names = " ".join(p.debian for p in packages)
    return f"{sudo}apt-get update && {sudo}apt-get install -y --no-install-recommends {names}"


def missing_line(package: SystemPackage) -> str:
    """How every report (this script, `toolsuite doctor`) names a missing package."""
    return f"{package.what} is not installed ({package.why}): {install_command([package])}"


def install(packages: list[SystemPackage]) -> None:
    manager = package_manager()
    if manager == "dnf":
        subprocess.run(["dnf", "install", "-y", *[p.fedora for p in packages]], check=True)
        return
    if manager is None:
        raise SystemExit("no apt-get or dnf on this machine: install these yourself: "
                         + ", ".join(p.what for p in packages))
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-q"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-q", "--no-install-recommends", *[p.debian for p in packages]],
                   check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check, and as root install, the system packages the suite uses.")
    parser.add_argument("--for", dest="purpose", choices=("run", "test"), default="test",
                        help="run: what the servers use; test: also what the tests need (default)")
    parser.add_argument("--check", action="store_true", help="only report; exit 1 when something is missing")
    args = parser.parse_args(argv)
    needed = missing(args.purpose)
    if not needed:
        return 0
    if args.check or os.geteuid() != 0:
        for package in needed:
            print(f"missing: {missing_line(package)}", file=sys.stderr)
        if not args.check:
            print(f"\nRun this once, then try again:\n    {install_command(needed)}", file=sys.stderr)
        return 1
    print(f"installing system packages: {', '.join(p.what for p in needed)}", file=sys.stderr)
    install(needed)
    still = missing(args.purpose)
    if still:
        print("still missing after installing: " + ", ".join(p.what for p in still), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

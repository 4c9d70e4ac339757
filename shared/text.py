"""Decoding text files in the encodings real data uses: UTF-8 (with or without BOM), UTF-16, GB18030."""

from __future__ import annotations

from dataclasses import dataclass

_BOMS = (
    (b"\xef\xbb\xbf", "utf-8-sig"),
    (b"\xff\xfe", "utf-16"),
    (b"\xfe\xff", "utf-16"),
)


@dataclass(frozen=True)
class DecodedText:
    text: str
    encoding: str
    replaced: int  # how many undecodable bytes became U+FFFD

    @property
    def note(self) -> str:
        if not self.replaced:
            return ""
        return f"[{self.replaced} invalid byte sequences were replaced with U+FFFD while decoding as {self.encoding}]"


def decode(data: bytes) -> DecodedText:
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            text = data.decode(encoding, errors="replace")
            return DecodedText(text, encoding, text.count("\ufffd"))
    for encoding in ("utf-8", "gb18030"):
        try:
            return DecodedText(data.decode(encoding), encoding, 0)
        except UnicodeDecodeError:
            continue
    # Mostly UTF-8 with a few broken bytes: keep the UTF-8 reading and say what was replaced.
    text = data.decode("utf-8", errors="replace")
    return DecodedText(text, "utf-8", text.count("\ufffd") - data.decode("utf-8", "ignore").count("\ufffd"))

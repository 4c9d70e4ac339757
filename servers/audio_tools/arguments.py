"""Arguments the audio tools share beyond `shared.params`."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

Language = Annotated[str | None, Field(
    description="Language of the speech, to skip detection: a code such as 'zh' or 'en', a tag such as 'zh-CN' or "
                "'zh-TW' (traditional characters), or a name ('Chinese'). Omit it to detect the language from the "
                "first 30 s of speech. A language the detector disagrees with is still followed, with a note.",
    max_length=32)]

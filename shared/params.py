"""Argument types several servers share, with their descriptions and bounds."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field

MAX_URI_CHARS = 70_000_000  # data: URIs carry whole files

PathOrUrl = Annotated[
    str,
    Field(description="A local path or file:// URI inside the allowed roots, an http(s) URL (fetched with "
          "size and time limits; private addresses refused) or a data: URI.",
          min_length=1, max_length=MAX_URI_CHARS),
]
Question = Annotated[
    str, Field(description="The question to answer, in any language.", min_length=1, max_length=20_000)
]
EnableVerification = Annotated[
    bool,
    Field(description="Cross-check the answer (extra model passes / evidence checks); slower, can change "
          "the answer. Its confidence is a heuristic."),
]

"""Parser error details that are safe to show an agent.

Converter libraries put the file they were given into their messages ("Failed to open file
'/tmp/toolsuite-data-x1y2' as type"), which would disclose host paths and temporary file names.
"""

from __future__ import annotations

import re

# An absolute path: a separator (or drive letter) not glued to a word, a number or a URL scheme.
_PATH = re.compile(r"""(?<![\w.:/\\])(?:[A-Za-z]:)?(?:[/\\][^\s'"/\\:]+)+[/\\]?""")


def safe_detail(exc: BaseException, limit: int = 150) -> str:
    """`exc`'s message with anything that looks like an absolute path replaced, cut to `limit`."""
    text = _PATH.sub("<file>", str(exc)).strip()
    return text[:limit]

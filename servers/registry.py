"""The suite's servers, declared once: name, package and default HTTP port. Imports nothing heavy.

Every console script runs `main`, which serves the server the script is named after; server modules
take their name from here (`name_of(__name__)`), so a name is written in one place.
"""

from __future__ import annotations

import importlib
import sys
from dataclasses import dataclass
from pathlib import Path

from mcp.server import MCPServer


@dataclass(frozen=True)
class ServerEntry:
    name: str
    module: str
    port: int

    def build(self) -> MCPServer:
        return importlib.import_module(self.module).build()

    def serve(self, argv: list[str] | None = None) -> None:
        from shared.transport import run_server

        run_server(self.name, self.port, self.build, argv)


BASE_PORT = 8101
SERVERS: tuple[ServerEntry, ...] = tuple(
    ServerEntry(name, f"servers.{package}.server", BASE_PORT + offset)
    for offset, (name, package) in enumerate(
        [
            ("tool-rag", "rag"),
            ("tool-reader", "reader"),
            ("tool-python", "python"),
            ("tool-vqa", "vqa"),
            ("tool-vqa-enhanced", "vqa_enhanced"),
            ("tool-transcribe", "transcribe"),
            ("tool-audio-enhanced", "audio_enhanced"),
            ("tool-video-enhanced", "video_enhanced"),
            ("tool-reasoning", "reasoning"),
        ]
    )
)
BY_NAME = {entry.name: entry for entry in SERVERS}


def entry(name: str) -> ServerEntry:
    key = name if name.startswith("tool-") else f"tool-{name}"
    if key not in BY_NAME:
        raise KeyError(f"unknown server {name!r}; servers are: {', '.join(BY_NAME)}")
    return BY_NAME[key]


def name_of(module: str) -> str:
    """The name of the server whose module is `module` (a server module passes its `__name__`)."""
    return next(e.name for e in SERVERS if e.module == module)


def main() -> None:
    """The console scripts' entry point: `tool-reader ...` serves tool-reader with those arguments."""
    script = Path(sys.argv[0]).name
    try:
        chosen = entry(script)
    except KeyError as exc:
        sys.stderr.write(f"{exc.args[0]} (the console script's name chooses the server)\n")
        sys.exit(2)
    chosen.serve()

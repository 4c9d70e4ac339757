"""The suite's servers: console-script name, module and default HTTP port. Imports nothing heavy."""

from __future__ import annotations

import importlib
from dataclasses import dataclass

from mcp.server import MCPServer


@dataclass(frozen=True)
class ServerEntry:
    name: str
    module: str
    port: int

    def build(self) -> MCPServer:
        return importlib.import_module(self.module).build()


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

"""docker-compose.yml is valid and keeps model keys out of the sandbox service."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.skipif(shutil.which("docker-compose") is None,
                                reason="Debian's docker-compose is not installed (.ci/run installs it)")


def _config() -> str:
    env = {**os.environ, "OPENAI_API_KEY": "sk-compose-leak-check", "TOOLSUITE_REASONING_MODEL": "m"}
    out = subprocess.run(["docker-compose", "-f", str(REPO / "docker-compose.yml"), "config"], cwd=REPO,
                         capture_output=True, text=True, env=env, timeout=60)
    assert out.returncode == 0, out.stderr
    return out.stdout


def _service_blocks(config: str) -> dict[str, str]:
    services = ("\n" + config).split("\nservices:\n", 1)[1]
    services = re.split(r"\n(?=[a-z])", services, maxsplit=1)[0]  # up to the next top-level key
    parts = re.split(r"\n  (?=[a-z][\w-]*:\n)", "\n" + services)
    return {p.split(":", 1)[0].strip(): p for p in parts if p.strip()}


def test_compose_file_is_valid_with_one_service_per_server():
    from servers.registry import SERVERS

    subprocess.run(["docker-compose", "config", "-q"], cwd=REPO, check=True, timeout=60)
    blocks = _service_blocks(_config())
    assert sorted(blocks) == sorted(e.name for e in SERVERS)
    for entry in SERVERS:
        block = blocks[entry.name]
        assert f"127.0.0.1:{entry.port}:{entry.port}" in block
        assert f"127.0.0.1:{entry.port}/healthz" in block
        assert "/data:ro" in block and "toolsuite-cache:/cache" in block


def test_sandbox_service_gets_no_model_keys():
    blocks = _service_blocks(_config())
    assert "sk-compose-leak-check" not in blocks["tool-python"]
    assert "API_KEY" not in blocks["tool-python"]
    assert "sk-compose-leak-check" in blocks["tool-reasoning"]

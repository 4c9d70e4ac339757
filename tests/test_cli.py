"""The `toolsuite` command as a user runs it."""

from __future__ import annotations

import json
import os
import subprocess

from tests.conftest import BIN


def _run(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "REASONING_"))}
    return subprocess.run([str(BIN / "toolsuite"), *args], capture_output=True, text=True, timeout=120, env=env)


def test_list_json_has_every_server_and_tool_schema():
    out = _run("list", "--json")
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    names = [s["name"] for s in data["servers"]]
    assert names == ["tool-rag", "tool-reader", "tool-python", "tool-vqa", "tool-vqa-enhanced", "tool-transcribe",
                     "tool-audio-enhanced", "tool-video-enhanced", "tool-reasoning"]
    rag = data["servers"][0]["tools"][0]
    assert rag["name"] == "rag_search" and rag["inputSchema"]["properties"]["top_k"]["default"] == 10


def test_list_text_is_readable():
    out = _run("list", "tool-reasoning")
    assert out.returncode == 0 and "reasoning(question)" in out.stdout


def test_call_prints_text_and_exits_1_on_tool_error():
    out = _run("call", "tool-reasoning", "reasoning", "--arg", "question=2+2?")
    assert out.returncode == 1
    assert "no reasoning model configured" in out.stdout


def test_call_json_reports_is_error_and_structured_content(tmp_path):
    out = _run("call", "reasoning", "reasoning", "--args-json", '{"question": "x"}', "--json")
    payload = json.loads(out.stdout)
    assert out.returncode == 1 and payload["isError"] is True and payload["structuredContent"] is None


def test_unknown_server_is_a_usage_error():
    out = _run("call", "tool-nope", "x")
    assert out.returncode == 2 and "unknown server" in out.stderr


def test_doctor_prints_a_table_for_every_server():
    out = _run("doctor")
    assert out.returncode == 0
    for name in ("tool-rag", "tool-reader", "tool-python", "tool-vqa", "tool-transcribe", "tool-reasoning"):
        assert name in out.stdout
    assert "system package bubblewrap" in out.stdout and "token counter" in out.stdout


def test_settings_markdown_is_the_readme_table():
    out = _run("settings", "--markdown")
    assert out.returncode == 0 and out.stdout.startswith("| Variable |")


def test_servers_take_their_names_from_the_registry_and_scripts_choose_by_name(monkeypatch, capsys):
    import sys

    import pytest

    from servers import registry

    assert [entry.build().name for entry in registry.SERVERS] == [entry.name for entry in registry.SERVERS]
    monkeypatch.setattr(sys, "argv", ["/usr/local/bin/tool-nope"])
    with pytest.raises(SystemExit) as stopped:
        registry.main()
    assert stopped.value.code == 2 and "unknown server 'tool-nope'" in capsys.readouterr().err

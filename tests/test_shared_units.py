"""Settings, output budgets and error descriptions of the shared layer."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from shared import budget, settings
from shared.errors import InputError, describe, leaf_exception, redact

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_variable_table_matches_the_settings():
    text = README.read_text(encoding="utf-8")
    start = text.index("<!-- settings-table:start -->")
    end = text.index("<!-- settings-table:end -->")
    table = text[start:end].split("\n", 1)[1].strip()
    assert table == settings.markdown_table(), "regenerate with: toolsuite settings --markdown"
    documented = set(re.findall(r"`(TOOLSUITE_[A-Z_]+)`", table))
    declared = {v.name for v in settings.ALL_VARIABLES if v.name.startswith("TOOLSUITE_")}
    assert documented == declared


def test_every_toolsuite_variable_read_in_code_is_declared():
    used: set[str] = set()
    for path in Path(__file__).resolve().parent.parent.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        used |= set(re.findall(r"\"(TOOLSUITE_[A-Z_]+)\"", path.read_text(encoding="utf-8")))
    declared = {v.name for v in settings.ALL_VARIABLES}
    assert used <= declared, used - declared


def test_role_settings_prefer_own_then_alias_then_openai(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", "fallback-key")
    monkeypatch.setenv("OPENAI_BASE_URL", "http://fallback/v1")
    monkeypatch.setenv("REASONING_MODEL_NAME", "alias-model")
    endpoint = settings.model_endpoint("REASONING")
    assert (endpoint.model, endpoint.api_key, endpoint.base_url) == ("alias-model", "fallback-key", "http://fallback/v1")
    assert endpoint.configured
    monkeypatch.setenv("TOOLSUITE_REASONING_MODEL", "own-model")
    monkeypatch.setenv("VISION_BASE_URL", "http://vision/v1")
    assert settings.model_endpoint("REASONING").model == "own-model"
    assert settings.model_endpoint("VISION").base_url == "http://vision/v1"
    assert not settings.model_endpoint("VISION").configured  # no model name


def test_tokens_are_counted_right_for_chinese_and_english():
    chinese = "中华人民共和国是一个位于东亚的国家" * 10
    english = "The quick brown fox jumps over the lazy dog. " * 10
    assert budget.count_tokens(chinese) > len(chinese) / 4 * 2  # chars/4 would undercount badly
    assert budget.count_tokens(english) < len(english) / 3
    assert budget.estimate_tokens(chinese) == pytest.approx(budget.count_tokens(chinese), rel=0.4)


def test_fit_text_cuts_with_a_visible_note_and_keeps_short_text():
    assert budget.fit_text("short", 100) == ("short", False)
    long_text = "第一段内容。" * 2000
    cut, was_cut = budget.fit_text(long_text, 500)
    assert was_cut and "output cut at the 500-token budget" in cut
    assert budget.count_tokens(cut) <= 500
    assert long_text.startswith(cut.split("\n\n[output cut")[0])


def test_page_of_gives_a_continuation_hint():
    text = "abcdefghij" * 100
    page = budget.page_of(text, start_index=100, max_chars=250)
    assert (page.start_index, page.end_index, page.total_chars) == (100, 350, 1000)
    assert page.text == text[100:350]
    assert "start_index=350" in page.continuation_hint()
    last = budget.page_of(text, start_index=900, max_chars=250)
    assert not last.has_more and last.continuation_hint() == ""


def test_exception_groups_are_unwrapped_to_the_real_cause():
    group = BaseExceptionGroup("unhandled errors in a TaskGroup", [InputError("file not found: x.pdf")])
    nested = ExceptionGroup("outer", [ExceptionGroup("inner", [ValueError("deep")])])
    assert describe(group) == "file not found: x.pdf"
    assert isinstance(leaf_exception(nested), ValueError)
    message = describe(nested, action="video_quick_analysis")
    assert "TaskGroup" not in message and "Traceback" not in message and "ValueError" in message


def test_unexpected_errors_hide_details_and_secrets(monkeypatch):
    monkeypatch.setenv("TOOLSUITE_VISION_API_KEY", "my-very-secret-value")
    assert "my-very-secret-value" not in redact("failed with key my-very-secret-value")
    assert "sk-abcdefghijkl" not in redact("Bearer sk-abcdefghijklmnop")
    message = describe(FileNotFoundError(2, "No such file", "/home/someone/private/thing"))
    assert "/home/someone" not in message


def test_a_bad_setting_is_an_error_naming_the_variable(monkeypatch):
    assert settings.number("TOOLSUITE_MAX_REDIRECTS", 5) == 5
    problems = {"lots": "is not a number", "nan": "is not a finite number", "-3": "is below its minimum of 0"}
    for value, problem in problems.items():
        monkeypatch.setenv("TOOLSUITE_MAX_REDIRECTS", value)
        with pytest.raises(settings.BadSetting, match=f"TOOLSUITE_MAX_REDIRECTS='{value}' {problem}"):
            settings.number("TOOLSUITE_MAX_REDIRECTS", 5, minimum=0)
    monkeypatch.setenv("TOOLSUITE_OCR_ENGINE", "paddle")
    with pytest.raises(settings.BadSetting, match="TOOLSUITE_OCR_ENGINE='paddle' is not one of: auto, rapidocr"):
        settings.choice("TOOLSUITE_OCR_ENGINE", ("auto", "rapidocr", "tesseract"), "auto")
    monkeypatch.setenv("TOOLSUITE_OCR_ENGINE", "RapidOCR")
    assert settings.choice("TOOLSUITE_OCR_ENGINE", ("auto", "rapidocr", "tesseract"), "auto") == "rapidocr"


def test_one_rule_joins_text_around_cjk_characters():
    from shared import cjk

    assert cjk.join(["直播电商", "高质量发展", "report", "2024"]) == "直播电商高质量发展report 2024"
    assert cjk.join(["会议纪要。", "The budget"]) == "会议纪要。The budget"
    assert cjk.join(["한국어 문장", "다음 줄"]) == "한국어 문장 다음 줄"  # Korean is written with spaces
    assert cjk.remove_spaces_between("直 播 电 商 and more") == "直播电商 and more"
    assert cjk.has_han("what is 平台责任?") and not cjk.has_han("すし and ｆｕｌｌ")
    assert cjk.is_han("平") and not cjk.is_han("す") and not cjk.is_han("a")
    assert cjk.count_wide("中文한국어abc") == 5 and cjk.count_han("中文한국어") == 2


def test_an_output_model_must_show_every_field_of_its_engine_type():
    from dataclasses import dataclass

    from pydantic import BaseModel

    from shared.outputs import from_engine, mirrors

    @dataclass
    class Reading:
        value: float
        unit: str
        raw: bytes

    class Shown(BaseModel):
        value: float
        unit: str
        source: str

    with pytest.raises(TypeError, match=r"Shown does not show Reading\.raw"):
        mirrors(Reading)(Shown)
    with pytest.raises(TypeError, match="leaves out other, which Reading does not have"):
        mirrors(Reading, leave_out={"raw": "binary", "other": "gone"})(Shown)
    checked = mirrors(Reading, leave_out={"raw": "binary, not for agents"})(Shown)
    assert from_engine(checked, Reading(1.5, "s", b"x"), source="a.wav") == Shown(value=1.5, unit="s", source="a.wav")


def test_json_nesting_measured_piece_by_piece_matches_the_whole():
    import json
    import random

    from shared.bounds import JsonDepthMeter

    rng = random.Random(7)
    # Strings full of brackets, escaped quotes and trailing backslashes, split at every kind of byte.
    leaves = ['a[b{', 'q"\\"[{', "\\\\", 'x\\\\"]', "中文[", "\\", 12345, True, None]

    def value(depth: int) -> object:
        if depth > 6 or rng.random() < 0.3:
            return rng.choice(leaves)
        if rng.random() < 0.5:
            return [value(depth + 1) for _ in range(rng.randint(0, 3))]
        return {f"k[{i}\\": value(depth + 1) for i in range(rng.randint(0, 3))}

    def nesting(item: object) -> int:
        children = item if isinstance(item, list) else list(item.values()) if isinstance(item, dict) else None
        return 0 if children is None else 1 + max(map(nesting, children), default=0)

    for _ in range(500):
        item = value(0)
        data = json.dumps(item, ensure_ascii=False).encode()
        meter, at = JsonDepthMeter(), 0
        while at < len(data):
            size = rng.randint(1, 7)
            meter.feed(data[at:at + size])
            at += size
        assert (meter.deepest, meter.depth) == (nesting(item), 0), data
    long_string = json.dumps(["x" * 300_000, 1]).encode()
    number = b"[" + b"7" * 300_000 + b"]"
    for data, field in ((long_string, "longest_string"), (number, "longest_bare")):
        meter = JsonDepthMeter()
        for at in range(0, len(data), 65536):
            meter.feed(data[at:at + 65536])
        assert 300_000 - 65536 <= getattr(meter, field) <= 300_000 and meter.deepest == 1

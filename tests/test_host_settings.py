"""The MiroThinker agent host's model settings names (`ANTHROPIC_*`, `VLLM_*`) configure the matching roles."""

from __future__ import annotations

from shared import settings
from shared.errors import redact


def test_anthropic_names_configure_reasoning_through_the_openai_compatible_endpoint(setenv):
    # As the host passes them to tool-reasoning: its default base URL has no /v1.
    setenv(ANTHROPIC_API_KEY="sk-ant-host-key", ANTHROPIC_BASE_URL="https://api.anthropic.com")
    endpoint = settings.model_endpoint("REASONING")
    assert endpoint.configured
    assert (endpoint.base_url, endpoint.api_key, endpoint.model) == (
        "https://api.anthropic.com/v1", "sk-ant-host-key", "claude-3-7-sonnet-20250219")
    # The reference's request settings come with that endpoint, unless set.
    assert settings.raw("TOOLSUITE_REASONING_MAX_TOKENS") == "21000"
    assert settings.raw("TOOLSUITE_REASONING_THINKING_BUDGET") == "19000"
    setenv(TOOLSUITE_REASONING_MAX_TOKENS="8000", TOOLSUITE_REASONING_MODEL="claude-sonnet-4-5")
    assert settings.raw("TOOLSUITE_REASONING_MAX_TOKENS") == "8000"
    assert settings.model_endpoint("REASONING").model == "claude-sonnet-4-5"


def test_anthropic_key_alone_means_anthropics_own_address_not_the_openai_fallback(setenv):
    setenv(ANTHROPIC_API_KEY="sk-ant-host-key", OPENAI_BASE_URL="https://api.openai.com/v1")
    assert settings.model_endpoint("VISION").base_url == "https://api.anthropic.com/v1"
    setenv(ANTHROPIC_BASE_URL="https://proxy.example/anthropic/v1/")
    assert settings.model_endpoint("VISION").base_url == "https://proxy.example/anthropic/v1"


def test_vllm_names_configure_vision_and_win_over_anthropic_for_it(setenv):
    setenv(ANTHROPIC_API_KEY="sk-ant-host-key",
           VLLM_API_KEY="vllm-key",
           VLLM_BASE_URL="http://vllm.internal:8000/v1",
           VLLM_MODEL="Qwen/Qwen2.5-VL-72B-Instruct")
    endpoint = settings.model_endpoint("VISION")
    assert (endpoint.base_url, endpoint.api_key, endpoint.model) == (
        "http://vllm.internal:8000/v1", "vllm-key", "Qwen/Qwen2.5-VL-72B-Instruct")
    assert settings.model_endpoint("REASONING").api_key == "sk-ant-host-key"  # VLLM_* is vision only
    assert settings.raw("TOOLSUITE_REASONING_MAX_TOKENS") == "21000"


def test_vllm_with_the_anthropic_provider_gets_v1_added(monkeypatch, setenv):
    # The host's VLLM_PROVIDER=anthropic passes ANTHROPIC_BASE_URL as VLLM_BASE_URL.
    setenv(VLLM_PROVIDER="anthropic",
           VLLM_API_KEY="sk-ant-host-key",
           VLLM_BASE_URL="https://gateway.example",
           VLLM_MODEL="claude-3-5-sonnet-20241022")
    assert settings.model_endpoint("VISION").base_url == "https://gateway.example/v1"
    monkeypatch.delenv("VLLM_PROVIDER")
    assert settings.model_endpoint("VISION").base_url == "https://gateway.example"
    setenv(VLLM_BASE_URL="https://api.anthropic.com/")
    assert settings.model_endpoint("VISION").base_url == "https://api.anthropic.com/v1"


def test_the_roles_own_settings_keep_host_keys_away_from_their_endpoint(monkeypatch, setenv):
    # A role with its own endpoint never sends the host's Anthropic key (or model) there.
    setenv(ANTHROPIC_API_KEY="sk-ant-host-key",
           TOOLSUITE_REASONING_BASE_URL="http://127.0.0.1:9/v1",
           TOOLSUITE_REASONING_MODEL="local-model")
    endpoint = settings.model_endpoint("REASONING")
    assert (endpoint.base_url, endpoint.api_key, endpoint.model) == ("http://127.0.0.1:9/v1", None, "local-model")
    assert settings.raw("TOOLSUITE_REASONING_MAX_TOKENS") is None
    monkeypatch.delenv("TOOLSUITE_REASONING_BASE_URL")
    setenv(REASONING_API_KEY="reference-name-key")  # the reference's own names count as the role's
    assert settings.model_endpoint("REASONING").api_key == "reference-name-key"


def test_other_roles_ignore_the_host_names(setenv):
    setenv(ANTHROPIC_API_KEY="sk-ant-host-key", VLLM_API_KEY="vllm-key")
    for role in ("EMBEDDING", "TRANSCRIBE", "AUDIO"):
        assert settings.model_endpoint(role).api_key is None


def test_host_keys_are_redacted(setenv):
    setenv(ANTHROPIC_API_KEY="anthropic-secret-value", VLLM_API_KEY="vllm-secret-value")
    assert redact("failed with anthropic-secret-value and vllm-secret-value") == "failed with [redacted] and [redacted]"


def test_the_settings_table_shows_the_host_names_beside_the_roles():
    table = settings.markdown_table()
    row = next(line for line in table.splitlines() if line.startswith("| `TOOLSUITE_VISION_API_KEY`"))
    assert "`VLLM_API_KEY` (host)" in row and "`ANTHROPIC_API_KEY` (host)" in row
    assert "| `ANTHROPIC_BASE_URL` | `https://api.anthropic.com` |" in table


def test_the_references_full_endpoint_urls_work_as_base_urls(setenv):
    # The reference's .env.example gives VISION_BASE_URL and REASONING_BASE_URL as .../v1/chat/completions.
    setenv(VISION_BASE_URL="https://vision.example/v1/chat/completions",
           REASONING_BASE_URL="https://reasoning.example/v1/chat/completions/")
    assert settings.model_endpoint("VISION").base_url == "https://vision.example/v1"
    assert settings.model_endpoint("REASONING").base_url == "https://reasoning.example/v1"

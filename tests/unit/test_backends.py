"""Backends from the environment, key order, model resolution, endpoints, dotenv parsing."""

import pytest

from protocol import endpoints
from protocol.backends import RouteError, default_backend, load_backends, read_keys, resolve_model
from protocol.env import parse_dotenv

ENV = {
    "OPENAI_API_KEY": "sk-a",
    "GEMINI_API_KEY_2": "g2",
    "GEMINI_API_KEY_10": "g10",
    "GEMINI_API_KEY_1": "g1",
    "ANTHROPIC_API_BASE_URL": "http://127.0.0.1:9/anthropic/v1/",
    "UNRELATED": "x",
}


def test_configured_backends_and_key_order() -> None:
    backends = load_backends(ENV)
    assert list(backends) == ["openai", "openai-responses", "anthropic", "gemini"]
    assert [k.key_id for k in backends["gemini"].keys] == [
        "GEMINI_API_KEY_1",
        "GEMINI_API_KEY_2",
        "GEMINI_API_KEY_10",
    ]
    assert backends["anthropic"].base_url == "http://127.0.0.1:9/anthropic/v1"
    assert backends["anthropic"].keys == []
    assert read_keys({"OPENAI_API_KEY": " "}, "OPENAI") == []


def test_default_backend() -> None:
    backends = load_backends(ENV)
    assert default_backend(backends, ENV) == "openai"
    assert default_backend(backends, {**ENV, "LLM_BACKEND": "gemini"}) == "gemini"
    assert default_backend(backends, {**ENV, "LLM_BACKEND": "openrouter"}) == "openai"


def test_resolve_model() -> None:
    backends = load_backends(ENV)
    b, m = resolve_model("gemini:gemini-2.5-pro", backends, "openai")
    assert (b.name, m) == ("gemini", "gemini-2.5-pro")
    b, m = resolve_model("gpt-4o", backends, "openai")
    assert (b.name, m) == ("openai", "gpt-4o")
    b, m = resolve_model("anthropic/claude-3.5-sonnet", backends, "openai")
    assert (b.name, m) == ("openai", "anthropic/claude-3.5-sonnet")
    b, m = resolve_model("openai:llama3:8b", backends, "openai")
    assert (b.name, m) == ("openai", "llama3:8b")
    with pytest.raises(RouteError, match="not configured"):
        resolve_model("openrouter:x/y", backends, "openai")
    with pytest.raises(RouteError, match="unknown backend 'mistral'"):
        resolve_model("mistral:large", backends, "openai")
    with pytest.raises(RouteError, match="no backend"):
        resolve_model("gpt-4o", {}, None)


def test_urls_and_auth() -> None:
    backends = load_backends({**ENV, "OPENROUTER_API_KEY": "or"})
    gem = backends["gemini"]
    assert gem.chat_path("gemini-2.5-pro", True) == (
        "/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    assert (gem.origin.scheme, gem.origin.host, gem.origin.port) == (
        "https", "generativelanguage.googleapis.com", 443
    )
    assert load_backends(ENV)["anthropic"].host_header == "127.0.0.1:9"
    assert gem.auth_headers(gem.first_key()) == {"x-goog-api-key": "g1"}
    orr = backends["openrouter"]
    headers = orr.auth_headers(orr.first_key())
    assert headers["authorization"] == "Bearer or" and "http-referer" in headers
    assert "x-title" in headers
    ant = backends["anthropic"]
    assert ant.auth_headers(None) == {"anthropic-version": "2023-06-01"}


def test_endpoints() -> None:
    m = endpoints.match
    assert m("POST", "/v1/chat/completions") == endpoints.Endpoint("openai", "chat")
    assert m("POST", "/anthropic/v1/messages").protocol == "anthropic"  # type: ignore[union-attr]
    assert m("POST", "/v1/messages/count_tokens").kind == "count_tokens"  # type: ignore[union-attr]
    g = m("POST", "/v1beta/models/openai:gpt-4o:streamGenerateContent")
    assert g == endpoints.Endpoint("gemini", "chat", "openai:gpt-4o", True)
    assert m("GET", "/v1beta/models") == endpoints.Endpoint("gemini", "models")
    assert m("HEAD", "/").kind == "probe"  # type: ignore[union-attr]
    assert m("GET", "/v1/chat/completions") is None
    assert endpoints.protocol_guess("/anthropic/v1/foo") == "anthropic"


def test_dotenv() -> None:
    text = '# c\nexport A=1\nB="two words"\nC=x # note\nbad line\nD=\'q\'\n'
    assert parse_dotenv(text) == {"A": "1", "B": "two words", "C": "x", "D": "q"}


def test_openai_responses_is_openai_spoken_in_the_responses_api() -> None:
    backends = load_backends({"OPENAI_API_KEY": "k", "OPENAI_API_BASE_URL": "http://h:1/v1"})
    alias, openai = backends["openai-responses"], backends["openai"]
    assert alias.protocol == "responses" and alias.kind.alias_of == "openai"
    assert alias.base_url == openai.base_url and alias.keys == openai.keys
    assert alias.chat_path("o3-pro", True) == "/v1/responses"
    assert alias.auth_headers(alias.keys[0]) == {"authorization": "Bearer k"}
    backend, model = resolve_model("openai-responses:o3-pro", backends, "openai")
    assert backend is alias and model == "o3-pro"

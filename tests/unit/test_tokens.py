"""Offline token counting: the shipped BPE files load with no network and count correctly."""

import socket

import pytest

from protocol import tokens
from protocol.canonical import ChatRequest, Message, TextPart, Tool, ToolCallPart


@pytest.fixture
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("network used")

    monkeypatch.setattr(socket, "create_connection", refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)


def test_encodings_load_offline(no_network: None, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "/nonexistent")
    for name in ("o200k_base", "cl100k_base"):
        tokens._ENCODINGS.pop(name, None)
        enc = tokens.encoding(name)
        assert enc.decode(enc.encode("hello world")) == "hello world"
    # the caller's own setting is restored
    import os

    assert os.environ["TIKTOKEN_CACHE_DIR"] == "/nonexistent"


def test_known_counts() -> None:
    assert tokens.count_text("hello world", "gpt-4o") == 2
    assert tokens.count_text("hello world", "gpt-4") == 2
    assert tokens.count_text("", "gpt-4o") == 0
    # special-token text is counted as text, never rejected
    assert tokens.count_text("<|endoftext|>", "gpt-4o") > 1


def test_count_request_grows_with_content() -> None:
    small = ChatRequest(
        source="openai",
        model="gpt-4o",
        messages=[Message(role="user", content=[TextPart(text="hi")])],
    )
    big = small.model_copy(deep=True)
    big.system = [TextPart(text="You are terse. " * 20)]
    big.tools = [Tool(name="get_weather", description="Weather for a city")]
    big.messages.append(
        Message(
            role="assistant",
            content=[ToolCallPart(id="c1", name="get_weather", arguments='{"city":"Paris"}')],
        )
    )
    assert 0 < tokens.count_request(small) < tokens.count_request(big)

"""The commands addon on mitmproxy test flows: options, env, disabled mode, overrides."""

from __future__ import annotations

import json
from typing import Any

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.commands import Commands
from addons.config import Config
from addons.gateway import Gateway
from protocol.exchange import exchange_of
from tests.addons.test_chain_addons import ENV, gateway_flow


async def hook(result: Any) -> None:
    """Run a hook as mitmproxy does: it may return something to await."""
    if result is not None:
        await result

def chat(text: str, model: str = "openai:gpt-4o", **extra: Any) -> dict[str, Any]:
    return {"model": model, "messages": [{"role": "user", "content": text}], **extra}


async def run(env: dict[str, str], body: dict[str, Any], **options: Any) -> Any:
    config = Config()
    config.apply(env)
    gateway, commands = Gateway(config), Commands(config)
    with taddons.context(config, gateway, commands) as tctx:
        # as at start-up: the environment has been read, every option is "updated"
        commands.configure({"command_prefix", "disable_interactive_commands", "llm_env_file"})
        if options:
            tctx.configure(commands, **options)
        f = gateway_flow("/v1/chat/completions", body, headers={"x-session-id": "t"})
        await hook(gateway.request(f))
        await hook(commands.request(f))
        return f


async def test_disabled_commands_pass_through_untouched() -> None:
    f = await run(ENV, chat("!/set(model=gemini:x) hi"), disable_interactive_commands=True)
    ex = exchange_of(f.metadata)
    assert f.response is None and ex is not None
    assert ex.request.messages[-1].text() == "!/set(model=gemini:x) hi"
    assert ex.requested_model == "openai:gpt-4o" and not ex.request_edited


async def test_disabled_by_environment() -> None:
    f = await run({**ENV, "DISABLE_INTERACTIVE_COMMANDS": "1"}, chat("!/hello"))
    assert f.response is None


async def test_prefix_from_environment_and_option() -> None:
    f = await run({**ENV, "COMMAND_PREFIX": "##"}, chat("##hello"))
    assert f.response is not None and b"llm-interactive-proxy" in f.response.content
    f = await run(ENV, chat("@@hello"), command_prefix="@@")
    assert f.response is not None
    with pytest.raises(exceptions.OptionsError, match="command prefix"):
        await run(ENV, chat("x"), command_prefix="! /")


async def test_command_only_reply_is_a_chat_completion() -> None:
    f = await run(ENV, chat("!/set(temperature=0.4)"))
    body = json.loads(f.response.content)
    assert body["object"] == "chat.completion"
    assert "temperature" in body["choices"][0]["message"]["content"]
    ex = exchange_of(f.metadata)
    assert ex is not None and ex.outcome == "local" and ex.session is not None
    assert ex.session.temperature == 0.4


async def test_streamed_command_reply_is_sse() -> None:
    f = await run(ENV, chat("!/hello", stream=True))
    assert f.response.headers["content-type"].startswith("text/event-stream")
    assert f.response.content.rstrip().endswith(b"data: [DONE]")

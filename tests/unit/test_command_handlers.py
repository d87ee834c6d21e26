"""What each in-chat command does to a session, its replies, and its errors."""

import pytest

from protocol.backends import load_backends
from protocol.command_handlers import (
    COMMANDS,
    SETTINGS,
    CommandContext,
    CommandError,
    run_commands,
)
from protocol.commands import parse_commands
from protocol.sessions import Session

ENV = {
    "OPENAI_API_KEY": "sk-a",
    "OPENAI_API_KEY_1": "sk-b",
    "ANTHROPIC_API_KEY": "ant",
    "GEMINI_API_BASE_URL": "http://127.0.0.1:9/v1beta",
}
MODELS = {
    "openai": ["gpt-4o", "gpt-4o-mini"],
    "anthropic": ["claude-sonnet-4-5", "claude-opus-4-1"],
    "gemini": [],
}


@pytest.fixture
def ctx() -> CommandContext:
    return CommandContext(
        backends=load_backends(ENV), models=MODELS, version="1.2.3", default_prefix="!/"
    )


@pytest.fixture
def session() -> Session:
    return Session("s-0123456789abcdef", created=0, last_seen=0)


def run(text: str, session: Session, ctx: CommandContext) -> list[str]:
    prefix = session.command_prefix or ctx.default_prefix
    return run_commands(parse_commands(text, prefix), session, ctx)


def error(text: str, session: Session, ctx: CommandContext) -> str:
    with pytest.raises(CommandError) as caught:
        run(text, session, ctx)
    return str(caught.value)


# ------------------------------------------------------------------------------------------------
# help, hello, models
# ------------------------------------------------------------------------------------------------


def test_help_lists_one_line_per_command(session: Session, ctx: CommandContext) -> None:
    [reply] = run("!/help", session, ctx)
    lines = reply.splitlines()
    assert len(lines) == 1 + len(COMMANDS)
    for name in ("help", "hello", "set", "unset", "oneoff", "models"):
        assert any(line.startswith(f"!/{name}") for line in lines[1:])
    assert lines[1] == "!/help, !/help(name) - list the commands, or details and examples for one"


def test_help_for_one_command(session: Session, ctx: CommandContext) -> None:
    [reply] = run("!/help(SET)", session, ctx)
    assert reply.startswith("!/set(key=value, ...)")
    for key in SETTINGS:
        assert f"  {key}: " in reply
    assert "examples:" in reply and "!/set(model=anthropic:claude-sonnet-4-5)" in reply
    assert "unset(model)" in run("!/help(unset)", session, ctx)[0]


def test_help_uses_the_session_prefix(session: Session, ctx: CommandContext) -> None:
    session.command_prefix = "##"
    [reply] = run("##help", session, ctx)
    assert "##hello" in reply and "!/" not in reply


def test_help_errors(session: Session, ctx: CommandContext) -> None:
    assert "unknown command 'stet'" in error("!/help(stet)", session, ctx)
    assert "did you mean set" in error("!/help(stet)", session, ctx)
    assert error("!/help(set, unset)", session, ctx).startswith("help: ")


def test_hello(session: Session, ctx: CommandContext) -> None:
    [reply] = run("!/hello", session, ctx)
    assert reply == (
        "llm-interactive-proxy 1.2.3; session s-0123456789abcdef; backends: "
        "openai (2 keys, 2 models), anthropic (1 key, 2 models), "
        "gemini (0 keys, model list unavailable)"
    )
    assert error("!/hello(x)", session, ctx) == "hello: takes no arguments"


def test_hello_without_backends(session: Session) -> None:
    empty = CommandContext(backends={}, models={}, version="0", default_prefix="!/", proxy_name="p")
    assert run("!/hello", session, empty) == [
        f"p 0; session {session.id}; backends: none configured"
    ]
    assert run("!/models", session, empty) == ["no backend is configured"]


def test_models(session: Session, ctx: CommandContext) -> None:
    [reply] = run("!/models", session, ctx)
    assert reply.splitlines() == [
        "openai: openai:gpt-4o, openai:gpt-4o-mini",
        "anthropic: anthropic:claude-sonnet-4-5, anthropic:claude-opus-4-1",
        "gemini: (list unavailable)",
    ]


# ------------------------------------------------------------------------------------------------
# set
# ------------------------------------------------------------------------------------------------


def test_set_model(session: Session, ctx: CommandContext) -> None:
    assert run("!/set(model=anthropic:claude-sonnet-4-5)", session, ctx) == [
        "model set to anthropic:claude-sonnet-4-5"
    ]
    assert session.model == "anthropic:claude-sonnet-4-5"


@pytest.mark.parametrize(
    ("value", "stored"),
    [
        ("openai/gpt-4o", "openai:gpt-4o"),
        ("Anthropic:claude-opus-4-1", "anthropic:claude-opus-4-1"),
        ("gemini:gemini-2.5-pro", "gemini:gemini-2.5-pro"),  # no list: any model accepted
        ("openai:ft:gpt-4o:org::id", "openai:ft:gpt-4o:org::id"),
        ("anthropic/claude:beta", "anthropic:claude:beta"),
    ],
)
def test_set_model_forms(value: str, stored: str, session: Session, ctx: CommandContext) -> None:
    run(f'!/set(model="{value}")', session, ctx)
    assert session.model == stored


def test_set_model_not_in_the_list_is_kept_with_a_note(
    session: Session, ctx: CommandContext
) -> None:
    [reply] = run("!/set(model=anthropic:claude-sonet-4-5)", session, ctx)
    assert session.model == "anthropic:claude-sonet-4-5"
    assert reply.startswith(
        "model set to anthropic:claude-sonet-4-5 (not in anthropic's model list; "
        "closest: anthropic:claude-sonnet-4-5"
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (
            "antropic:claude-sonnet-4-5",
            ["backend 'antropic'", "is unknown", "anthropic:claude-sonnet-4-5"],
        ),
        ("gpt-4o", ["'gpt-4o' names no backend", "closest: openai:gpt-4o"]),
        (
            "openrouter:meta/llama",
            ["backend 'openrouter'", "is not configured (set OPENROUTER_API_KEY)"],
        ),
        ("openai:", ["names no model"]),
        ("", ["names no backend"]),
    ],
)
def test_bad_model_names_the_closest_valid_names(
    value: str, expected: list[str], session: Session, ctx: CommandContext
) -> None:
    message = error(f'!/set(model="{value}")', session, ctx)
    assert message.startswith("set: ")
    for fragment in expected:
        assert fragment in message
    assert "configured backends: openai, anthropic, gemini" in message or "no model" in message
    assert session.model is None


def test_set_several_keys_at_once(session: Session, ctx: CommandContext) -> None:
    [reply] = run(
        "!/set(backend=Anthropic, project='billing, v2', temperature=0.7, Reasoning_Effort=HIGH,"
        " thinking_budget=2048, REDACT-api-keys-in-prompts=off, loop-detection=yes,"
        " command-prefix=##)",
        session,
        ctx,
    )
    assert reply == (
        "backend set to anthropic; project set to billing, v2; temperature set to 0.7; "
        "reasoning-effort set to high; thinking-budget set to 2048; "
        "redact-api-keys-in-prompts set to false; loop-detection set to true; "
        "command-prefix set to ##"
    )
    assert (session.backend, session.project, session.temperature) == (
        "anthropic",
        "billing, v2",
        0.7,
    )
    assert (session.reasoning_effort, session.thinking_budget) == ("high", 2048)
    assert (session.redact_api_keys, session.loop_detection) == (False, True)
    assert session.command_prefix == "##"


@pytest.mark.parametrize("word", ["true", "YES", "on", "1"])
def test_true_words(word: str, session: Session, ctx: CommandContext) -> None:
    run(f"!/set(loop-detection={word})", session, ctx)
    assert session.loop_detection is True


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        ("temperature=2.5", "temperature must be a number from 0 to 2, got '2.5'"),
        ("temperature=-0.1", "temperature must be"),
        ("temperature=nan", "temperature must be"),
        ("temperature=hot", "temperature must be"),
        (
            "reasoning-effort=extreme",
            "reasoning-effort must be one of none|minimal|low|medium|high",
        ),
        ("thinking-budget=-1", "thinking-budget must be a whole number >= 0"),
        ("thinking-budget=1.5", "thinking-budget must be"),
        ("loop-detection=maybe", "loop-detection must be true or false"),
        ("redact-api-keys-in-prompts=2", "redact-api-keys-in-prompts must be true or false"),
        ("command-prefix=!", "command-prefix must be 2-10 printable non-space characters"),
        ("command-prefix='a b'", "command-prefix must be"),
        ("project='  '", "project must be a non-empty name"),
        ("backend=openrouter", "backend 'openrouter' is not configured"),
        ("backend=antropic", "did you mean anthropic"),
        ("modle=openai:gpt-4o", "unknown key 'modle'; did you mean model"),
        ("model=openai:gpt-4o, model=openai:gpt-4o-mini", "'model' is given twice"),
        ("openai:gpt-4o", "takes key=value pairs"),
    ],
)
def test_set_bad_arguments(args: str, fragment: str, session: Session, ctx: CommandContext) -> None:
    message = error(f"!/set({args})", session, ctx)
    assert message.startswith("set: ")
    assert fragment in message


def test_set_without_arguments(session: Session, ctx: CommandContext) -> None:
    assert "needs key=value" in error("!/set", session, ctx)
    assert "needs key=value" in error("!/set()", session, ctx)


# ------------------------------------------------------------------------------------------------
# Atomicity, order, unknown commands
# ------------------------------------------------------------------------------------------------


def test_nothing_applies_when_any_command_is_bad(session: Session, ctx: CommandContext) -> None:
    text = "!/set(model=openai:gpt-4o) !/oneoff(anthropic:claude-opus-4-1) !/set(temperature=5)"
    assert error(text, session, ctx).startswith("set: temperature")
    assert session.model is None and session.oneoff is None and session.temperature is None


@pytest.mark.parametrize(
    "name",
    [
        "create-failover-route",
        "route-append",
        "route-prepend",
        "route-list",
        "route-clear",
        "delete-failover-route",
        "list-failover-routes",
        "nope",
    ],
)
def test_other_commands_are_unknown(name: str, session: Session, ctx: CommandContext) -> None:
    message = error(f"!/set(project=x) !/{name}(name=r)", session, ctx)
    assert message.startswith(f"{name}: unknown command")
    assert "help, hello, set, unset, oneoff, models, usage" in message
    assert session.project is None


def test_unknown_command_suggests(session: Session, ctx: CommandContext) -> None:
    assert "did you mean hello" in error("!/helo", session, ctx)


def test_command_error_carries_command_and_problem(session: Session, ctx: CommandContext) -> None:
    with pytest.raises(CommandError) as caught:
        run("!/set(temperature=9)", session, ctx)
    assert caught.value.command == "set"
    assert caught.value.problem.startswith("temperature must be")


def test_replies_come_in_order_and_see_earlier_changes(
    session: Session, ctx: CommandContext
) -> None:
    replies = run("!/set(command-prefix=@@) !/help !/set(project=p)", session, ctx)
    assert len(replies) == 3
    assert replies[0] == "command-prefix set to @@"
    assert "@@hello" in replies[1]
    assert replies[2] == "project set to p"


# ------------------------------------------------------------------------------------------------
# unset, oneoff
# ------------------------------------------------------------------------------------------------


def test_unset(session: Session, ctx: CommandContext) -> None:
    run("!/set(model=openai:gpt-4o, temperature=1, loop-detection=off)", session, ctx)
    assert run("!/unset(model, Temperature, loop_detection)", session, ctx) == [
        "model unset; temperature unset; loop-detection unset"
    ]
    assert session.model is None and session.temperature is None and session.loop_detection is None


def test_unset_every_key_and_oneoff(session: Session, ctx: CommandContext) -> None:
    run("!/oneoff(openai:gpt-4o)", session, ctx)
    run(f"!/unset({', '.join(SETTINGS)}, oneoff)", session, ctx)
    assert session.oneoff is None


def test_unset_errors(session: Session, ctx: CommandContext) -> None:
    assert "unknown key 'modle'; did you mean model" in error("!/unset(modle)", session, ctx)
    assert "takes key names only" in error("!/unset(model=x)", session, ctx)
    assert "needs one or more keys" in error("!/unset", session, ctx)


def test_oneoff_is_taken_once(session: Session, ctx: CommandContext) -> None:
    assert run("!/oneoff(gemini/gemini-2.5-flash)", session, ctx) == [
        "the next request goes to gemini:gemini-2.5-flash"
    ]
    assert session.model is None
    assert session.take_oneoff() == "gemini:gemini-2.5-flash"
    assert session.take_oneoff() is None


def test_oneoff_errors(session: Session, ctx: CommandContext) -> None:
    assert "closest: openai:gpt-4o" in error("!/oneoff(opnai:gpt-4o)", session, ctx)
    assert "takes exactly one backend:model" in error("!/oneoff", session, ctx)
    assert "takes exactly one" in error("!/oneoff(openai:gpt-4o, openai:gpt-4o-mini)", session, ctx)
    assert session.oneoff is None


def test_oneoff_accepts_model_keyword(session: Session, ctx: CommandContext) -> None:
    run("!/oneoff(model=openai:gpt-4o)", session, ctx)
    assert session.oneoff == "openai:gpt-4o"


def test_usage_reports_the_session_totals(session: Session, ctx: CommandContext) -> None:
    totals = {"requests": 3, "errors": 1, "input_tokens": 120, "output_tokens": 40,
              "reasoning_tokens": 5, "cached_tokens": 0, "cost_usd": 0.0012}
    with_usage = CommandContext(ctx.backends, ctx.models, ctx.version, ctx.default_prefix,
                                session_usage=totals)
    (reply,) = run_commands(parse_commands("!/usage"), session, with_usage)
    assert "3 requests (1 failed)" in reply and "120 tokens in, 40 out" in reply
    assert "$0.0012" in reply
    (off,) = run_commands(parse_commands("!/usage"), session, ctx)
    assert "usage recording is off" in off
    with pytest.raises(CommandError, match="usage"):
        run_commands(parse_commands("!/usage(x)"), session, with_usage)

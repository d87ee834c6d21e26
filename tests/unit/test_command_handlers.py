"""What each in-chat command does to a session, its replies, and its errors."""

from pathlib import Path

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
from protocol.failover import Route
from protocol.routes import RouteStore
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
        "openai-responses: the openai models, in the Responses API",
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
    assert "configured backends: openai, openai-responses, anthropic, gemini" in message or "no model" in message
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


def test_unknown_commands_change_nothing(session: Session, ctx: CommandContext) -> None:
    message = error("!/set(project=x) !/nope(name=r)", session, ctx)
    assert message.startswith("nope: unknown command")
    assert "help, hello, set, unset, oneoff, models, usage, create-failover-route" in message
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
    totals = {
        "requests": 3,
        "errors": 1,
        "input_tokens": 120,
        "output_tokens": 40,
        "reasoning_tokens": 5,
        "cached_tokens": 0,
        "cost_usd": 0.0012,
    }
    with_usage = CommandContext(
        ctx.backends, ctx.models, ctx.version, ctx.default_prefix, session_usage=totals
    )
    (reply,) = run_commands(parse_commands("!/usage"), session, with_usage)
    assert "3 requests (1 failed)" in reply and "120 tokens in, 40 out" in reply
    assert "$0.0012" in reply
    (off,) = run_commands(parse_commands("!/usage"), session, ctx)
    assert "usage recording is off" in off
    with pytest.raises(CommandError, match="usage"):
        run_commands(parse_commands("!/usage(x)"), session, with_usage)


# ------------------------------------------------------------------------------------------------
# Failover routes
# ------------------------------------------------------------------------------------------------


@pytest.fixture
def routes() -> RouteStore:
    return RouteStore()


@pytest.fixture
def rctx(ctx: CommandContext, routes: RouteStore) -> CommandContext:
    return CommandContext(ctx.backends, ctx.models, ctx.version, ctx.default_prefix, routes=routes)


@pytest.fixture
def smart(routes: RouteStore) -> Route:
    routes.create("smart", "km")
    return routes.append("smart", ["openai:gpt-4o", "anthropic:claude-sonnet-4-5"])


def test_create_failover_route(session: Session, rctx: CommandContext, routes: RouteStore) -> None:
    assert run("!/create-failover-route(name=Smart.v2, policy=KM)", session, rctx) == [
        "created failover route Smart.v2 [km]: (no elements)"
    ]
    assert routes.get("Smart.v2") == Route("Smart.v2", "km", [])
    assert routes.get("smart.v2") is None


@pytest.mark.usefixtures("smart")
def test_route_append_and_prepend(
    session: Session, rctx: CommandContext, routes: RouteStore
) -> None:
    assert run("!/route-append(name=smart, openai/gpt-4o-mini)", session, rctx) == [
        "appended 1 element: smart [km]: openai:gpt-4o, anthropic:claude-sonnet-4-5, "
        "openai:gpt-4o-mini"
    ]
    assert run(
        "!/route-prepend(name=smart, Anthropic:claude-opus-4-1, gemini:gemini-2.5-pro)",
        session,
        rctx,
    ) == [
        "prepended 2 elements: smart [km]: anthropic:claude-opus-4-1, gemini:gemini-2.5-pro, "
        "openai:gpt-4o, anthropic:claude-sonnet-4-5, openai:gpt-4o-mini"
    ]
    route = routes.get("smart")
    assert route is not None and route.elements[:2] == [
        "anthropic:claude-opus-4-1",
        "gemini:gemini-2.5-pro",
    ]


@pytest.mark.usefixtures("smart")
def test_route_append_notes_a_model_not_in_the_list(
    session: Session, rctx: CommandContext, routes: RouteStore
) -> None:
    [reply] = run("!/route-append(name=smart, openai:gpt-4o-mni)", session, rctx)
    assert reply.startswith("appended 1 element: smart [km]: ")
    assert reply.endswith(
        "; openai:gpt-4o-mni (not in openai's model list; closest: openai:gpt-4o-mini, "
        "openai:gpt-4o)"
    )
    route = routes.get("smart")
    assert route is not None and route.elements[-1] == "openai:gpt-4o-mni"


@pytest.mark.usefixtures("smart")
def test_route_list_clear_delete(
    session: Session, rctx: CommandContext, routes: RouteStore
) -> None:
    assert run("!/route-list(name=smart)", session, rctx) == [
        "smart [km]: openai:gpt-4o, anthropic:claude-sonnet-4-5"
    ]
    assert run("!/route-clear(name=smart)", session, rctx) == ["cleared smart [km]: (no elements)"]
    assert routes.get("smart") == Route("smart", "km", [])
    assert run("!/delete-failover-route(name=smart)", session, rctx) == [
        "deleted failover route smart [km]: (no elements)"
    ]
    assert routes.names() == []


def test_list_failover_routes(session: Session, rctx: CommandContext, routes: RouteStore) -> None:
    assert run("!/list-failover-routes", session, rctx) == [
        "no failover routes; create one with !/create-failover-route(name=N, policy=km)"
    ]
    routes.create("b", "k")
    routes.create("a", "mk")
    routes.append("a", ["openai:gpt-4o"])
    assert run("!/list-failover-routes", session, rctx) == [
        "a [mk]: openai:gpt-4o\nb [k]: (no elements)"
    ]


def test_route_commands_of_one_message_see_the_earlier_ones(
    session: Session, rctx: CommandContext, routes: RouteStore
) -> None:
    replies = run(
        "!/create-failover-route(name=r, policy=m) !/route-append(name=r, openai:gpt-4o)"
        " !/route-prepend(name=r, anthropic:claude-opus-4-1) !/route-list(name=r)"
        " !/delete-failover-route(name=r) !/create-failover-route(name=r, policy=k)",
        session,
        rctx,
    )
    assert replies[3] == "r [m]: anthropic:claude-opus-4-1, openai:gpt-4o"
    assert replies[5] == "created failover route r [k]: (no elements)"
    assert routes.get("r") == Route("r", "k", [])


def test_routes_are_shared_by_all_sessions(session: Session, rctx: CommandContext) -> None:
    run("!/create-failover-route(name=shared, policy=k)", session, rctx)
    other = Session("s-other", created=0, last_seen=0)
    assert run("!/route-list(name=shared)", other, rctx) == ["shared [k]: (no elements)"]


def test_route_commands_persist_through_the_store(
    session: Session, ctx: CommandContext, tmp_path: Path
) -> None:
    db = str(tmp_path / "proxy.sqlite")
    with RouteStore(db) as store:
        on_disk = CommandContext(
            ctx.backends, ctx.models, ctx.version, ctx.default_prefix, routes=store
        )
        run(
            "!/create-failover-route(name=r, policy=mk) !/route-append(name=r, openai:gpt-4o)",
            session,
            on_disk,
        )
    with RouteStore(db) as again:
        assert again.get("r") == Route("r", "mk", ["openai:gpt-4o"])


@pytest.mark.parametrize(
    ("text", "fragments"),
    [
        # create-failover-route
        ("create-failover-route(name='a b', policy=k)", ["route name must be 1-64 characters"]),
        ("create-failover-route(name=a:b, policy=k)", ["route name must be"]),
        ("create-failover-route(name=x/y, policy=k)", ["route name must be"]),
        (f"create-failover-route(name={'x' * 65}, policy=k)", ["route name must be"]),
        ("create-failover-route(name=OpenAI, policy=k)", ["'OpenAI' is a backend's name"]),
        ("create-failover-route(name=openrouter, policy=k)", ["is a backend's name"]),
        ("create-failover-route(name=r, policy=km2)", ["policy must be one of k|m|km|mk"]),
        ("create-failover-route(name=r)", ["needs policy=k|m|km|mk"]),
        ("create-failover-route(policy=k)", ["needs name=N"]),
        ("create-failover-route(r, k)", ["takes name= and policy=, got 'r'"]),
        ("create-failover-route(name=r, policy=k, keys=2)", ["unknown argument 'keys'"]),
        ("create-failover-route(name=r, name=q, policy=k)", ["'name' is given twice"]),
        ("create-failover-route(name=smart, policy=k)", ["'smart' already exists", "smart [km]"]),
        # route-append / route-prepend
        (
            "route-append(name=smrt, openai:gpt-4o)",
            ["no failover route 'smrt'", "did you mean smart"],
        ),
        ("route-prepend(name=SMART, openai:gpt-4o)", ["did you mean smart", "routes: new, smart"]),
        ("route-append(name=smart)", ["needs one or more backend:model elements"]),
        ("route-append(openai:gpt-4o)", ["needs name=N"]),
        ("route-append(name=smart, policy=k, openai:gpt-4o)", ["unknown argument 'policy'"]),
        (
            "route-append(name=smart, antropic:claude-sonnet-4-5)",
            ["backend 'antropic'", "closest: anthropic:claude-sonnet-4-5"],
        ),
        (
            "route-prepend(name=smart, gpt-4o)",
            ["'gpt-4o' names no backend", "closest: openai:gpt-4o"],
        ),
        (
            "route-append(name=smart, openai:gpt-4o, openrouter:x/y)",
            ["backend 'openrouter'", "is not configured (set OPENROUTER_API_KEY)"],
        ),
        ("route-append(name=smart, openai:)", ["names no model"]),
        # route-list, route-clear, delete-failover-route, list-failover-routes
        ("route-list(name=dumb)", ["no failover route 'dumb'", "(routes: new, smart)"]),
        ("route-list", ["needs name=N"]),
        ("route-list(smart)", ["takes name=N only, got 'smart'"]),
        ("route-clear(name=smar)", ["no failover route 'smar'; did you mean smart"]),
        ("route-clear(name=smart, policy=k)", ["unknown argument 'policy'"]),
        ("delete-failover-route(name=x)", ["no failover route 'x'"]),
        ("delete-failover-route()", ["needs name=N"]),
        ("list-failover-routes(name=smart)", ["takes no arguments"]),
    ],
)
@pytest.mark.usefixtures("smart")
def test_route_command_errors_change_nothing(
    text: str, fragments: list[str], session: Session, rctx: CommandContext, routes: RouteStore
) -> None:
    before = routes.routes()
    name = text.partition("(")[0]
    message = error(f"!/create-failover-route(name=new, policy=k) !/{text}", session, rctx)
    assert message.startswith(f"{name}: ")
    for fragment in fragments:
        assert fragment in message
    assert routes.routes() == before


def test_unknown_route_without_any_routes(session: Session, rctx: CommandContext) -> None:
    assert "(there are no routes yet)" in error("!/route-list(name=r)", session, rctx)


@pytest.mark.usefixtures("smart")
def test_a_bad_command_after_route_changes_applies_none_of_them(
    session: Session, rctx: CommandContext, routes: RouteStore
) -> None:
    before = routes.routes()
    text = (
        "!/route-clear(name=smart) !/create-failover-route(name=r, policy=k)"
        " !/route-append(name=r, openai:gpt-4o) !/set(temperature=9)"
    )
    assert error(text, session, rctx).startswith("set: temperature")
    assert routes.routes() == before
    text = "!/delete-failover-route(name=smart) !/route-append(name=smart, openai:gpt-4o)"
    assert "no failover route 'smart'" in error(text, session, rctx)
    assert routes.routes() == before


@pytest.mark.parametrize(
    "text",
    [
        "create-failover-route(name=r, policy=k)",
        "route-append(name=r, openai:gpt-4o)",
        "route-prepend(name=r, openai:gpt-4o)",
        "route-list(name=r)",
        "route-clear(name=r)",
        "delete-failover-route(name=r)",
        "list-failover-routes",
    ],
)
def test_route_commands_when_routes_are_off(
    text: str, session: Session, ctx: CommandContext
) -> None:
    message = error(f"!/{text}", session, ctx)
    assert (
        message
        == f"{text.partition('(')[0]}: failover routes are off in this proxy (no route store)"
    )


def test_help_for_the_route_commands(session: Session, ctx: CommandContext) -> None:
    [listing] = run("!/help", session, ctx)
    assert "!/route-append(name=N, backend:model, ...) - add backend:model elements" in listing
    assert "\n!/list-failover-routes - every failover route" in listing
    [details] = run("!/help(create_failover_route)", session, ctx)
    assert details.startswith("!/create-failover-route(name=N, policy=k|m|km|mk) - ")
    assert "  mk: key 1 of every element, then key 2" in details
    assert "!/create-failover-route(name=smart, policy=km)" in details


def test_the_latest_of_effort_and_budget_wins(session: Session, ctx: CommandContext) -> None:
    run("!/set(reasoning-effort=high)", session, ctx)
    run("!/set(thinking-budget=5000)", session, ctx)
    assert (session.reasoning_effort, session.thinking_budget) == (None, 5000)
    run("!/set(reasoning-effort=low)", session, ctx)
    assert (session.reasoning_effort, session.thinking_budget) == ("low", None)
    run("!/set(reasoning-effort=medium, thinking-budget=3000)", session, ctx)
    assert (session.reasoning_effort, session.thinking_budget) == ("medium", 3000)

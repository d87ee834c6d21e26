"""What each in-chat command does to a session, and the reply it gives.

This module owns the command set, the validation of their arguments and their reply texts:
`help`, `hello`, `set`, `unset`, `oneoff`, `models`, `usage` (this session), and the failover
route commands `create-failover-route`, `route-append`, `route-prepend`, `route-list`,
`route-clear`, `delete-failover-route`, `list-failover-routes` (shared by all sessions).
`run_commands` checks every command of a message before applying any, so a message with one
bad command changes nothing; the route commands of one message are checked in order against
the routes as the earlier ones leave them. The syntax is `protocol.commands`; the session
record is `protocol.sessions`; the routes are `protocol.routes`.
"""

from __future__ import annotations

import contextlib
import difflib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any

from protocol.backends import KINDS, Backend
from protocol.commands import Command, normalise_name, valid_prefix
from protocol.failover import POLICIES, Route
from protocol.routes import NAME_RULES, RouteStore, check_name, check_policy
from protocol.sessions import Session

Apply = Callable[[Session], str]
EFFORTS = ("none", "minimal", "low", "medium", "high")
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0"})


@dataclass
class CommandContext:
    """What the commands may know of the proxy: its backends, their models, its identity."""

    backends: Mapping[str, Backend]
    models: Mapping[str, Sequence[str]]  # backend -> model ids (without the backend prefix)
    version: str
    default_prefix: str
    proxy_name: str = "llm-interactive-proxy"
    # this session's `/usage/stats` totals, looked up by the caller when a `usage` command is
    # present (None: usage recording is off)
    session_usage: Mapping[str, Any] | None = None
    # the failover routes, shared by all sessions (None: routes are off)
    routes: RouteStore | None = None


class CommandError(Exception):
    """A command that cannot run: unknown, or with a bad argument. Nothing was applied."""

    def __init__(self, command: str, problem: str) -> None:
        super().__init__(f"{command}: {problem}")
        self.command = command
        self.problem = problem


# ------------------------------------------------------------------------------------------------
# Helpers: suggestions, model names, value parsers.
# ------------------------------------------------------------------------------------------------


def _closest(word: str, candidates: Sequence[str], n: int = 3, cutoff: float = 0.5) -> list[str]:
    return difflib.get_close_matches(word, list(dict.fromkeys(candidates)), n=n, cutoff=cutoff)


def _suggest(word: str, candidates: Sequence[str]) -> str:
    close = _closest(word, candidates)
    return f"; did you mean {' or '.join(close)}?" if close else ""


def _model_names(ctx: CommandContext) -> list[str]:
    """`backend:model` for every known model of a configured backend."""
    return [f"{b}:{m}" for b, models in ctx.models.items() if b in ctx.backends for m in models]


def _model_suggestions(query: str, ctx: CommandContext) -> str:
    """The closest valid names to `query`: exact model-name matches first, then by difflib."""
    names = _model_names(ctx)
    bare = query.partition(":")[2] or query
    exact = [n for n in names if n.partition(":")[2] == bare]
    close = exact + _closest(query, names + list(ctx.backends), n=5, cutoff=0.6)
    close = list(dict.fromkeys(close))[:5]
    configured = ", ".join(ctx.backends) or "none"
    hint = f"; closest: {', '.join(close)}" if close else ""
    return f"{hint}; configured backends: {configured}"


def _split_model(text: str) -> tuple[str | None, str]:
    """(backend, model) from `backend:model` or `backend/model`; backend None when unnamed."""
    for sep in (":", "/"):
        head, found, rest = text.partition(sep)
        if found and head.strip().lower() in KINDS:
            return head.strip().lower(), rest.strip()
    head, found, rest = text.partition(":")
    if found and head.strip().isidentifier():
        return head.strip().lower(), rest.strip()
    return None, text


def parse_model(command: str, value: str, ctx: CommandContext) -> tuple[str, str]:
    """A `backend:model` on a configured backend, and a note when the model is not listed."""
    text = value.strip()
    backend, model = _split_model(text)
    if backend is None:
        raise CommandError(
            command,
            f"'{text}' names no backend (write backend:model){_model_suggestions(text, ctx)}",
        )
    if backend not in ctx.backends:
        why = (
            f"is not configured (set {KINDS[backend].env_prefix}_API_KEY)"
            if backend in KINDS
            else "is unknown"
        )
        raise CommandError(
            command, f"backend '{backend}' in '{text}' {why}{_model_suggestions(text, ctx)}"
        )
    if not model:
        raise CommandError(command, f"'{text}' names no model after the backend")
    full = f"{backend}:{model}"
    known = ctx.models.get(backend) or []
    if known and model not in known:
        close = _closest(model, list(known))
        also = f"; closest: {', '.join(f'{backend}:{m}' for m in close)}" if close else ""
        return full, f" (not in {backend}'s model list{also})"
    return full, ""


def _parse_backend(command: str, value: str, ctx: CommandContext) -> str:
    name = value.strip().lower()
    if name not in ctx.backends:
        configured = ", ".join(ctx.backends) or "none"
        raise CommandError(
            command,
            f"backend '{value}' is not configured{_suggest(name, list(ctx.backends))} "
            f"(configured: {configured})",
        )
    return name


def _parse_bool(command: str, key: str, value: str) -> bool:
    word = value.strip().lower()
    if word in _TRUE:
        return True
    if word in _FALSE:
        return False
    raise CommandError(command, f"{key} must be true or false (yes/no, on/off, 1/0), got '{value}'")


def _parse_temperature(command: str, value: str) -> float:
    try:
        number = float(value)
    except ValueError:
        number = math.nan
    if not 0 <= number <= 2:
        raise CommandError(command, f"temperature must be a number from 0 to 2, got '{value}'")
    return number


def _parse_budget(command: str, value: str) -> int:
    try:
        number = int(value.strip())
    except ValueError:
        number = -1
    if number < 0:
        raise CommandError(command, f"thinking-budget must be a whole number >= 0, got '{value}'")
    return number


def _parse_effort(command: str, value: str) -> str:
    word = value.strip().lower()
    if word not in EFFORTS:
        raise CommandError(
            command, f"reasoning-effort must be one of {'|'.join(EFFORTS)}, got '{value}'"
        )
    return word


def _parse_project(command: str, value: str) -> str:
    if not value.strip():
        raise CommandError(command, "project must be a non-empty name")
    return value.strip()


def _parse_prefix(command: str, value: str) -> str:
    if not valid_prefix(value):
        raise CommandError(
            command, f"command-prefix must be 2-10 printable non-space characters, got '{value}'"
        )
    return value


def _show(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


# ------------------------------------------------------------------------------------------------
# Settings: the keys of set/unset.
# ------------------------------------------------------------------------------------------------

# A parser: (command name, raw value, context) -> (value to store, note for the reply).
Parser = Callable[[str, str, CommandContext], tuple[Any, str]]


@dataclass(frozen=True)
class Setting:
    key: str  # as typed in commands
    field: str  # the Session attribute
    accepts: str  # for help and errors
    parse: Parser


def _plain(fn: Callable[[str, str], Any]) -> Parser:
    return lambda command, value, ctx: (fn(command, value), "")


def _backend(command: str, value: str, ctx: CommandContext) -> tuple[str, str]:
    return _parse_backend(command, value, ctx), ""


def _boolean(key: str) -> Parser:
    return lambda command, value, ctx: (_parse_bool(command, key, value), "")


SETTINGS: dict[str, Setting] = {
    s.key: s
    for s in (
        Setting("model", "model", "backend:model or backend/model", parse_model),
        Setting("backend", "backend", "a configured backend", _backend),
        Setting("project", "project", "a name for usage rows", _plain(_parse_project)),
        Setting("temperature", "temperature", "a number from 0 to 2", _plain(_parse_temperature)),
        Setting("reasoning-effort", "reasoning_effort", "|".join(EFFORTS), _plain(_parse_effort)),
        Setting(
            "thinking-budget",
            "thinking_budget",
            "tokens, a whole number >= 0",
            _plain(_parse_budget),
        ),
        Setting(
            "redact-api-keys-in-prompts",
            "redact_api_keys",
            "true|false",
            _boolean("redact-api-keys-in-prompts"),
        ),
        Setting("loop-detection", "loop_detection", "true|false", _boolean("loop-detection")),
        Setting(
            "command-prefix",
            "command_prefix",
            "2-10 printable non-space characters",
            _plain(_parse_prefix),
        ),
    )
}
UNSET_ONLY = {"oneoff": "oneoff"}  # unset also cancels a pending one-off
# Settings that say the same thing two ways: setting one drops the other (the latest wins),
# unless both are set by the same command.
REPLACES = {"reasoning_effort": "thinking_budget", "thinking_budget": "reasoning_effort"}


def _setting(command: str, key: str) -> Setting:
    setting = SETTINGS.get(normalise_name(key))
    if setting is None:
        raise CommandError(
            command,
            f"unknown key '{key}'{_suggest(normalise_name(key), list(SETTINGS))} "
            f"(keys: {', '.join(SETTINGS)})",
        )
    return setting


# ------------------------------------------------------------------------------------------------
# The commands. Each validator checks a command and returns what applies it.
# ------------------------------------------------------------------------------------------------


def _no_args(command: Command) -> None:
    if command.args or command.kwargs:
        raise CommandError(command.name, "takes no arguments")


def _prefix(session: Session, ctx: CommandContext) -> str:
    return session.command_prefix or ctx.default_prefix


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


def _help(command: Command, ctx: CommandContext) -> Apply:
    if command.kwargs or len(command.args) > 1:
        raise CommandError("help", "takes at most one command name, as help(name)")
    if not command.args:
        return lambda session: _help_all(_prefix(session, ctx))
    name = normalise_name(command.args[0].strip())
    spec = COMMANDS.get(name)
    if spec is None:
        raise CommandError(
            "help", f"unknown command '{command.args[0]}'{_suggest(name, list(COMMANDS))}"
        )
    return lambda session: spec.details(_prefix(session, ctx))


def _help_all(prefix: str) -> str:
    lines = [f"commands (type {prefix}help(name) for details):"]
    lines += [spec.line(prefix) for spec in COMMANDS.values()]
    return "\n".join(lines)


def _hello(command: Command, ctx: CommandContext) -> Apply:
    _no_args(command)

    def describe(name: str, backend: Backend) -> str:
        models = ctx.models.get(name)
        counted = _plural(len(models), "model") if models else "model list unavailable"
        return f"{name} ({_plural(len(backend.keys), 'key')}, {counted})"

    backends = ", ".join(
        describe(n, b) for n, b in ctx.backends.items() if b.kind.alias_of is None
    ) or "none configured"
    return lambda session: (
        f"{ctx.proxy_name} {ctx.version}; session {session.id}; backends: {backends}"
    )


def _usage(command: Command, ctx: CommandContext) -> Apply:
    _no_args(command)
    totals = ctx.session_usage
    if totals is None:
        return lambda session: "usage recording is off (usage_db is empty)"

    def describe(session: Session) -> str:
        cost = totals.get("cost_usd")
        priced = f"${cost:.4f}" if cost is not None else "unknown (no price for these models)"
        return (
            f"session {session.id}: {_plural(int(totals.get('requests') or 0), 'request')}"
            f" ({totals.get('errors') or 0} failed), "
            f"{totals.get('input_tokens') or 0} tokens in, {totals.get('output_tokens') or 0} out"
            f" ({totals.get('reasoning_tokens') or 0} reasoning, "
            f"{totals.get('cached_tokens') or 0} cached), cost {priced}"
        )

    return describe


def _set(command: Command, ctx: CommandContext) -> Apply:
    if command.args:
        raise CommandError("set", f"takes key=value pairs, got '{command.args[0]}'")
    if not command.kwargs:
        raise CommandError("set", f"needs key=value, one or more of: {', '.join(SETTINGS)}")
    changes: list[tuple[Setting, Any, str]] = []
    seen: set[str] = set()
    for key, value in command.kwargs:
        setting = _setting("set", key)
        if setting.key in seen:
            raise CommandError("set", f"'{setting.key}' is given twice")
        seen.add(setting.key)
        parsed, note = setting.parse("set", value, ctx)
        changes.append((setting, parsed, note))

    fields = {setting.field for setting, _, _ in changes}

    def apply(session: Session) -> str:
        replies = []
        for setting, parsed, note in changes:
            setattr(session, setting.field, parsed)
            replaced = REPLACES.get(setting.field)
            if replaced and replaced not in fields:
                setattr(session, replaced, None)
            replies.append(f"{setting.key} set to {_show(parsed)}{note}")
        return "; ".join(replies)

    return apply


def _unset(command: Command, ctx: CommandContext) -> Apply:
    if command.kwargs:
        raise CommandError("unset", "takes key names only, as unset(model, temperature)")
    if not command.args:
        raise CommandError("unset", f"needs one or more keys: {', '.join(SETTINGS)}")
    fields: list[tuple[str, str]] = []
    for key in command.args:
        name = normalise_name(key.strip())
        field = UNSET_ONLY.get(name) or _setting("unset", key).field
        fields.append((name, field))

    def apply(session: Session) -> str:
        for _, field in fields:
            setattr(session, field, None)
        return "; ".join(f"{name} unset" for name, _ in fields)

    return apply


def _oneoff(command: Command, ctx: CommandContext) -> Apply:
    values = list(command.args) + [v for k, v in command.kwargs if k == "model"]
    if len(values) != 1 or any(k != "model" for k, _ in command.kwargs):
        raise CommandError("oneoff", "takes exactly one backend:model, as oneoff(openai:gpt-4o)")
    target, note = parse_model("oneoff", values[0], ctx)

    def apply(session: Session) -> str:
        session.oneoff = target
        return f"the next request goes to {target}{note}"

    return apply


def _models(command: Command, ctx: CommandContext) -> Apply:
    _no_args(command)
    if not ctx.backends:
        return lambda session: "no backend is configured"
    lines = []
    for name, backend in ctx.backends.items():
        if backend.kind.alias_of is not None:
            lines.append(f"{name}: the {backend.kind.alias_of} models, in the Responses API")
            continue
        models = ctx.models.get(name) or []
        listed = ", ".join(f"{name}:{m}" for m in models) if models else "(list unavailable)"
        lines.append(f"{name}: {listed}")
    text = "\n".join(lines)
    return lambda session: text


# ------------------------------------------------------------------------------------------------
# Failover routes: shared by all sessions, kept by `protocol.routes.RouteStore`.
# ------------------------------------------------------------------------------------------------


class _RouteDraft:
    """The routes as the route commands of one message, checked so far, will leave them."""

    def __init__(self, store: RouteStore) -> None:
        self.store = store
        self.changed: dict[str, Route | None] = {}  # None: deleted

    def get(self, name: str) -> Route | None:
        return self.changed[name] if name in self.changed else self.store.get(name)

    def names(self) -> list[str]:
        names = set(self.store.names())
        for name, route in self.changed.items():
            if route is None:
                names.discard(name)
            else:
                names.add(name)
        return sorted(names)


# The draft of the message being checked (set by `run_commands`; a command checked alone by
# `validate_command` is checked against the store as it is).
_DRAFT: ContextVar[_RouteDraft | None] = ContextVar("route_draft", default=None)


@contextlib.contextmanager
def _message_draft(ctx: CommandContext) -> Iterator[None]:
    token = _DRAFT.set(_RouteDraft(ctx.routes) if ctx.routes is not None else None)
    try:
        yield
    finally:
        _DRAFT.reset(token)


def _draft(command: str, ctx: CommandContext) -> _RouteDraft:
    if ctx.routes is None:
        raise CommandError(command, "failover routes are off in this proxy (no route store)")
    draft = _DRAFT.get()
    if draft is None or draft.store is not ctx.routes:
        draft = _RouteDraft(ctx.routes)
    return draft


def show_route(route: Route) -> str:
    """`name [policy]: backend:model, backend:model`."""
    return f"{route.name} [{route.policy}]: {', '.join(route.elements) or '(no elements)'}"


def _route_kwargs(command: Command, keys: tuple[str, ...], form: str) -> dict[str, str]:
    """The keyword arguments of a route command, each one of `keys` and given once."""
    found: dict[str, str] = {}
    for key, value in command.kwargs:
        if key not in keys:
            raise CommandError(command.name, f"unknown argument '{key}' (write {form})")
        if key in found:
            raise CommandError(command.name, f"'{key}' is given twice")
        found[key] = value
    return found


def _route_name(command: Command, kwargs: Mapping[str, str], form: str) -> str:
    name = (kwargs.get("name") or "").strip()
    if not name:
        raise CommandError(command.name, f"needs name=N, the route's name (write {form})")
    return name


def _known_route(command: Command, draft: _RouteDraft, name: str) -> Route:
    route = draft.get(name)
    if route is not None:
        return route
    names = draft.names()
    same = [n for n in names if n.lower() == name.lower()]
    close = list(dict.fromkeys(same + _closest(name, names)))[:3]
    hint = f"; did you mean {' or '.join(close)}?" if close else ""
    known = f"routes: {', '.join(names)}" if names else "there are no routes yet"
    raise CommandError(command.name, f"no failover route '{name}'{hint} ({known})")


def _name_only(command: Command, form: str) -> str:
    """The route named by a command that takes `name=N` and nothing else."""
    if command.args:
        raise CommandError(command.name, f"takes name=N only, got '{command.args[0]}'")
    return _route_name(command, _route_kwargs(command, ("name",), form), form)


def _create_route(command: Command, ctx: CommandContext) -> Apply:
    form = "create-failover-route(name=N, policy=k|m|km|mk)"
    draft = _draft(command.name, ctx)
    if command.args:
        raise CommandError(command.name, f"takes name= and policy=, got '{command.args[0]}'")
    kwargs = _route_kwargs(command, ("name", "policy"), form)
    name = _route_name(command, kwargs, form)
    try:
        check_name(name)
    except ValueError:
        raise CommandError(command.name, f"route name must be {NAME_RULES}, got '{name}'") from None
    if name.lower() in ctx.backends or name.lower() in KINDS:
        raise CommandError(
            command.name, f"'{name}' is a backend's name; give the route another name"
        )
    if "policy" not in kwargs:
        raise CommandError(command.name, f"needs policy={'|'.join(POLICIES)} (write {form})")
    try:
        policy = check_policy(kwargs["policy"])
    except ValueError:
        raise CommandError(
            command.name, f"policy must be one of {'|'.join(POLICIES)}, got '{kwargs['policy']}'"
        ) from None
    existing = draft.get(name)
    if existing is not None:
        raise CommandError(
            command.name,
            f"failover route '{name}' already exists ({show_route(existing)}); "
            f"delete-failover-route(name={name}) first",
        )
    draft.changed[name] = Route(name, policy, [])
    store = draft.store
    return lambda session: f"created failover route {show_route(store.create(name, policy))}"


def _add_elements(at_end: bool) -> Callable[[Command, CommandContext], Apply]:
    """The validator of route-append (`at_end`) or route-prepend."""

    def validate(command: Command, ctx: CommandContext) -> Apply:
        form = f"{command.name}(name=N, backend:model, ...)"
        draft = _draft(command.name, ctx)
        name = _route_name(command, _route_kwargs(command, ("name",), form), form)
        route = _known_route(command, draft, name)
        if not command.args:
            raise CommandError(
                command.name, f"needs one or more backend:model elements (write {form})"
            )
        parsed = [parse_model(command.name, value, ctx) for value in command.args]
        added = [element for element, _ in parsed]
        notes = "".join(f"; {element}{note}" for element, note in parsed if note)
        elements = [*route.elements, *added] if at_end else [*added, *route.elements]
        draft.changed[name] = Route(name, route.policy, elements)
        store = draft.store
        verb = "appended" if at_end else "prepended"

        def apply(session: Session) -> str:
            new = store.append(name, added) if at_end else store.prepend(name, added)
            return f"{verb} {_plural(len(added), 'element')}: {show_route(new)}{notes}"

        return apply

    return validate


def _list_route(command: Command, ctx: CommandContext) -> Apply:
    draft = _draft(command.name, ctx)
    name = _name_only(command, "route-list(name=N)")
    _known_route(command, draft, name)
    store = draft.store

    def describe(session: Session) -> str:
        route = store.get(name)
        return show_route(route) if route is not None else f"no failover route '{name}'"

    return describe


def _clear_route(command: Command, ctx: CommandContext) -> Apply:
    draft = _draft(command.name, ctx)
    name = _name_only(command, "route-clear(name=N)")
    route = _known_route(command, draft, name)
    draft.changed[name] = Route(name, route.policy, [])
    store = draft.store
    return lambda session: f"cleared {show_route(store.clear(name))}"


def _delete_route(command: Command, ctx: CommandContext) -> Apply:
    draft = _draft(command.name, ctx)
    name = _name_only(command, "delete-failover-route(name=N)")
    _known_route(command, draft, name)
    draft.changed[name] = None
    store = draft.store
    return lambda session: f"deleted failover route {show_route(store.delete(name))}"


def _list_routes(command: Command, ctx: CommandContext) -> Apply:
    store = _draft(command.name, ctx).store
    _no_args(command)

    def describe(session: Session) -> str:
        routes = store.routes()
        if not routes:
            return (
                "no failover routes; create one with "
                f"{_prefix(session, ctx)}create-failover-route(name=N, policy=km)"
            )
        return "\n".join(show_route(route) for route in routes)

    return describe


_POLICY_HELP = (
    """policies:
  k: the first element only, each of its backend's keys in turn
  m: every element in order, one key each
  km: every element in order, all of its keys
  mk: key 1 of every element, then key 2 of every element, ...
route names: """
    + NAME_RULES
    + """, not a backend's name; case-sensitive.
routes are shared by all sessions and kept across restarts."""
)


# ------------------------------------------------------------------------------------------------
# The registry and the runner.
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CommandSpec:
    name: str
    forms: tuple[str, ...]  # how it is written, without the prefix
    summary: str
    more: str
    examples: tuple[str, ...]
    validate: Callable[[Command, CommandContext], Apply]

    def line(self, prefix: str) -> str:
        return f"{', '.join(prefix + form for form in self.forms)} - {self.summary}"

    def details(self, prefix: str) -> str:
        lines = [self.line(prefix)]
        lines += self.more.splitlines()
        lines += ["examples:"] + [f"  {prefix}{e}" for e in self.examples]
        return "\n".join(lines)


_SET_KEYS = "\n".join(f"  {s.key}: {s.accepts}" for s in SETTINGS.values())

COMMANDS: dict[str, CommandSpec] = {
    c.name: c
    for c in (
        CommandSpec(
            "help",
            ("help", "help(name)"),
            "list the commands, or details and examples for one",
            "",
            ("help", "help(set)"),
            _help,
        ),
        CommandSpec(
            "hello",
            ("hello",),
            "the proxy's name and version, this session's id, the configured backends",
            "",
            ("hello",),
            _hello,
        ),
        CommandSpec(
            "set",
            ("set(key=value, ...)",),
            "override a setting for the rest of this session",
            "keys (- and _ alike, any case; quote values holding , or ):\n" + _SET_KEYS,
            (
                "set(model=anthropic:claude-sonnet-4-5)",
                "set(model=openrouter/meta-llama/llama-3.1-70b-instruct, temperature=0.2)",
                "set(reasoning-effort=high, thinking-budget=8000)",
                'set(project="billing, v2")',
            ),
            _set,
        ),
        CommandSpec(
            "unset",
            ("unset(key, ...)",),
            "back to the default for each key",
            "keys: " + ", ".join([*SETTINGS, *UNSET_ONLY]),
            ("unset(model)", "unset(temperature, reasoning-effort)"),
            _unset,
        ),
        CommandSpec(
            "oneoff",
            ("oneoff(backend:model)",),
            "send only the next request to backend:model, then back",
            "",
            ("oneoff(openai:gpt-4o)", "oneoff(gemini/gemini-2.5-pro)"),
            _oneoff,
        ),
        CommandSpec(
            "models",
            ("models",),
            "the models each configured backend offers, as backend:model",
            "",
            ("models",),
            _models,
        ),
        CommandSpec(
            "usage",
            ("usage",),
            "this session's requests, tokens and cost so far",
            "counted from the usage database (rows written before this message)",
            ("usage",),
            _usage,
        ),
        CommandSpec(
            "create-failover-route",
            ("create-failover-route(name=N, policy=k|m|km|mk)",),
            "create a failover route; requesting model N then uses it (all sessions)",
            _POLICY_HELP,
            (
                "create-failover-route(name=smart, policy=km)",
                "create-failover-route(name=cheap, policy=m)",
            ),
            _create_route,
        ),
        CommandSpec(
            "route-append",
            ("route-append(name=N, backend:model, ...)",),
            "add backend:model elements at the end of route N",
            "elements are tried in order; write backend:model or backend/model",
            (
                "route-append(name=smart, openai:gpt-4o, anthropic:claude-sonnet-4-5)",
                "route-append(name=smart, openrouter/meta-llama/llama-3.1-70b-instruct)",
            ),
            _add_elements(at_end=True),
        ),
        CommandSpec(
            "route-prepend",
            ("route-prepend(name=N, backend:model, ...)",),
            "add backend:model elements at the start of route N, in the order given",
            "",
            ("route-prepend(name=smart, anthropic:claude-opus-4-1)",),
            _add_elements(at_end=False),
        ),
        CommandSpec(
            "route-list",
            ("route-list(name=N)",),
            "show route N: policy and elements",
            "",
            ("route-list(name=smart)",),
            _list_route,
        ),
        CommandSpec(
            "route-clear",
            ("route-clear(name=N)",),
            "remove every element of route N (the route and its policy stay)",
            "",
            ("route-clear(name=smart)",),
            _clear_route,
        ),
        CommandSpec(
            "delete-failover-route",
            ("delete-failover-route(name=N)",),
            "delete route N",
            "a route from mitm.conf comes back from it at the next start",
            ("delete-failover-route(name=smart)",),
            _delete_route,
        ),
        CommandSpec(
            "list-failover-routes",
            ("list-failover-routes",),
            "every failover route, with its policy and elements",
            "",
            ("list-failover-routes",),
            _list_routes,
        ),
    )
}


def validate_command(command: Command, ctx: CommandContext) -> Apply:
    """What applies `command`, once its name and arguments are checked (else CommandError)."""
    spec = COMMANDS.get(command.name)
    if spec is None:
        raise CommandError(
            command.name,
            f"unknown command{_suggest(command.name, list(COMMANDS))} "
            f"(commands: {', '.join(COMMANDS)})",
        )
    return spec.validate(command, ctx)


def run_commands(commands: list[Command], session: Session, ctx: CommandContext) -> list[str]:
    """Check every command, then apply them in order: one reply per command.

    Raises CommandError (and changes nothing) when any command is unknown or has a bad argument.
    """
    with _message_draft(ctx):
        appliers = [validate_command(command, ctx) for command in commands]
    return [apply(session) for apply in appliers]

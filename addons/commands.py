"""Commands addon: sessions, and the in-chat commands typed into any client (`!/set(model=...)`).

Each chat flow is given its session (the `x-session-id` header, an agent's own session header,
or a fingerprint of the client key and the conversation's first user message). Commands in the
newest user message run (all of them, in order, only if every one is valid) and are removed from
the text; commands in older user messages are only removed, never run again. A message that was
nothing but commands is answered here, in the client's protocol (as SSE when it asked to
stream), and never reaches a backend; so is a command error. Then the session's overrides
(model, backend, one-off, temperature, reasoning) are applied to the request for routing.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Awaitable
from typing import Any

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from addons._http import JSON_HEADERS, SSE_HEADERS, dumps, fail_closed
from addons.config import Config
from protocol import __version__
from protocol.backends import KINDS
from protocol.canonical import ChatResponse, Message, TextPart, Usage
from protocol.codec import codec
from protocol.command_handlers import CommandContext, CommandError, run_commands
from protocol.commands import DEFAULT_PREFIX, Command, parse_commands, strip_commands, valid_prefix
from protocol.env import env_bool
from protocol.exchange import Exchange, exchange_of
from protocol.pipeline import encode_whole
from protocol.reasoning import apply_session
from protocol.sessions import Session, session_id_for

logger = logging.getLogger(__name__)


def newest_user_index(messages: list[Message]) -> int | None:
    """The user message the user just typed: the last message, or the last before trailing
    system entries (Claude Code adds one after the prompt); None when the conversation ends
    otherwise (an agent's tool-result turn: the user typed nothing new)."""
    i = len(messages) - 1
    while i >= 0 and messages[i].role == "system":
        i -= 1
    return i if i >= 0 and messages[i].role == "user" else None


def first_user_text(messages: list[Message]) -> str:
    for message in messages:
        if message.role == "user":
            return message.text()
    return ""


class Commands:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.prefix = DEFAULT_PREFIX
        self.disabled = False

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "command_prefix",
            str,
            DEFAULT_PREFIX,
            "Prefix of in-chat commands (2-10 printable characters, no spaces); env COMMAND_PREFIX.",
        )
        loader.add_option(
            "disable_interactive_commands",
            bool,
            False,
            "Pass command text through untouched; env DISABLE_INTERACTIVE_COMMANDS.",
        )
        loader.add_option(
            "session_idle_seconds", int, 3600, "Sessions unused this long are forgotten."
        )
        loader.add_option("session_max", int, 10000, "At most this many sessions are kept.")

    def configure(self, updated: set[str]) -> None:
        env = self.config.env
        if updated & {"command_prefix", "llm_env_file"}:
            prefix = ctx.options.command_prefix
            if not ctx.options.has_changed("command_prefix"):
                prefix = env.get("COMMAND_PREFIX") or prefix
            if not valid_prefix(prefix):
                raise exceptions.OptionsError(
                    f"command prefix {prefix!r}: use 2-10 printable characters without spaces"
                )
            self.prefix = prefix
        if updated & {"disable_interactive_commands", "llm_env_file"}:
            disabled = ctx.options.disable_interactive_commands
            if not ctx.options.has_changed("disable_interactive_commands"):
                try:
                    disabled = env_bool(env, "DISABLE_INTERACTIVE_COMMANDS", disabled)
                except ValueError as e:
                    raise exceptions.OptionsError(str(e)) from None
            self.disabled = disabled
        if updated & {"session_idle_seconds", "session_max"}:
            self.config.sessions.idle_seconds = ctx.options.session_idle_seconds
            self.config.sessions.max_sessions = ctx.options.session_max

    def running(self) -> None:
        self.config.catalog.snapshot(self.config.backends)  # fetch the model lists early

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        ex = exchange_of(flow.metadata)
        if ex is None or flow.response is not None or ex.front.endpoint != "chat":
            return None
        session = self._session(flow, ex)
        if not self.disabled:
            prefix = session.command_prefix or self.prefix
            self._strip_history(ex, prefix)
            found = self._newest_commands(ex, prefix)
            if found:  # only a message with commands waits for anything
                return self._with_commands(flow, ex, session, found)
        self._apply_overrides(ex, session)
        return None

    async def _with_commands(
        self,
        flow: http.HTTPFlow,
        ex: Exchange,
        session: Session,
        found: list[tuple[TextPart, list[Command]]],
    ) -> None:
        if not await self._run(flow, ex, session, found):
            self._apply_overrides(ex, session)

    def _session(self, flow: http.HTTPFlow, ex: Exchange) -> Session:
        sid = session_id_for(
            ex.session_header, ex.client_key, first_user_text(ex.request.messages)
        )
        session = self.config.sessions.get(sid)
        ex.front.session_id = session.id
        ex.session = session
        return session

    @staticmethod
    def _strip_history(ex: Exchange, prefix: str) -> None:
        """Commands in earlier user messages never run again, and never reach the backend.

        A user turn that was nothing but commands is dropped, with the proxy's own reply to it
        (the assistant text right after it): neither was ever part of the model's conversation.
        """
        messages = ex.request.messages
        newest = newest_user_index(messages)
        drop: set[int] = set()
        for i, message in enumerate(messages):
            if message.role != "user" or i == newest:
                continue
            stripped = False
            for part in message.content:
                if isinstance(part, TextPart) and prefix in part.text:
                    commands = parse_commands(part.text, prefix)
                    if commands:
                        part.text = strip_commands(part.text, commands)
                        stripped = True
            if not stripped:
                continue
            ex.request_edited = True
            message.content = [
                p for p in message.content if not (isinstance(p, TextPart) and not p.text.strip())
            ]
            if not message.content:
                drop.add(i)
                reply = messages[i + 1]
                if reply.role == "assistant" and all(
                    isinstance(p, TextPart) for p in reply.content
                ):
                    drop.add(i + 1)
        if drop:
            drop.discard(len(messages) - 1)
            ex.request.messages = [m for i, m in enumerate(messages) if i not in drop]

    @staticmethod
    def _newest_commands(ex: Exchange, prefix: str) -> list[tuple[TextPart, list[Command]]]:
        messages = ex.request.messages
        newest = newest_user_index(messages)
        if newest is None:
            return []  # an agent's tool-result turn: the user typed nothing new
        found: list[tuple[TextPart, list[Command]]] = []
        for part in messages[newest].content:
            if isinstance(part, TextPart) and prefix in part.text:
                commands = parse_commands(part.text, prefix)
                if commands:
                    found.append((part, commands))
        return found

    async def _run(
        self,
        flow: http.HTTPFlow,
        ex: Exchange,
        session: Session,
        found: list[tuple[TextPart, list[Command]]],
    ) -> bool:
        """Run the newest message's commands; True when the flow was answered here."""
        commands = [c for _, cs in found for c in cs]
        # never wait on a backend to answer a command: use the cached lists
        models = self.config.catalog.snapshot(self.config.backends)
        context = CommandContext(
            backends=self.config.backends,
            models=models,
            version=__version__,
            default_prefix=self.prefix,
            session_usage=await self._session_usage(session, commands),
            routes=self.config.routes,
        )
        try:
            replies = run_commands(commands, session, context)
        except CommandError as e:
            logger.info("command refused in session %s: %s", session.id, e.command)
            self._answer(flow, ex, f"Command error: {e}\nNothing was applied; type !/help.")
            return True
        newest = newest_user_index(ex.request.messages)
        assert newest is not None
        last = ex.request.messages[newest]
        for part, cmds in found:
            part.text = strip_commands(part.text, cmds)
        last.content = [
            p for p in last.content if not (isinstance(p, TextPart) and not p.text.strip())
        ]
        ex.request_edited = True
        if not last.content:
            self._answer(flow, ex, "\n".join(replies))
            return True
        return False

    async def _session_usage(
        self, session: Session, commands: list[Command]
    ) -> dict[str, Any] | None:
        store = self.config.usage_store
        if store is None or not any(c.name == "usage" for c in commands):
            return None
        await asyncio.to_thread(store.flush, 2.0)
        stats = await asyncio.to_thread(store.stats, {"session": session.id})
        totals: dict[str, Any] = stats["totals"]
        return totals

    @staticmethod
    def _answer(flow: http.HTTPFlow, ex: Exchange, text: str) -> None:
        """The proxy's own reply, as the client's protocol says an assistant answers."""
        reply = ChatResponse(
            source=ex.front.protocol,
            id=f"proxy-{uuid.uuid4().hex[:24]}",
            model=ex.requested_model or "llm-interactive-proxy",
            parts=[TextPart(text=text)],
            stop_reason="end",
            usage=Usage(input_tokens=0, output_tokens=0),
        )
        front = codec(ex.front.protocol)
        if ex.front.client_stream:
            encoder = front.encoder(model=None, include_usage=ex.request.include_usage)
            flow.response = http.Response.make(200, encode_whole(reply, encoder), SSE_HEADERS)
        else:
            flow.response = http.Response.make(
                200, dumps(front.render_response(reply)), JSON_HEADERS
            )
        ex.outcome, ex.status = "local", 200
        ex.usage, ex.usage_source = reply.usage, "counted"

    @staticmethod
    def _apply_overrides(ex: Exchange, session: Session) -> None:
        target = session.take_oneoff() or session.model
        if target:
            ex.requested_model = target
        elif session.backend:
            prefix, sep, rest = ex.requested_model.partition(":")
            bare = rest if sep and prefix in KINDS else ex.requested_model
            ex.requested_model = f"{session.backend}:{bare}"
        notes = apply_session(
            ex.request,
            effort=session.reasoning_effort,
            budget=session.thinking_budget,
            temperature=session.temperature,
        )
        if notes:
            ex.request_edited = True
            logger.debug("session %s: %s", session.id, "; ".join(notes))
        session.requests += 1

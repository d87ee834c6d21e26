"""Sessions: which conversation a request belongs to, and the overrides that conversation set.

This module owns the session id (explicit from a header, else derived), the `Session` record
(the overrides in-chat commands set, a request counter) and the in-memory `SessionStore` with
idle expiry and a cap. What the commands do to a session is `protocol.command_handlers`; how
the overrides are used (routing, sampling, redaction) belongs to the addons that read them.
"""

from __future__ import annotations

import hashlib
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

_DOMAIN = b"llm-interactive-proxy/session/v1\x00"


def _fingerprint(first_user_text: str) -> bytes:
    """A digest of the conversation's first user message, blind to whitespace differences."""
    normalised = " ".join(first_user_text.split())
    return hashlib.sha256(normalised.encode("utf-8", "surrogatepass")).digest()


def session_id_for(explicit: str | None, client_key: str | None, first_user_text: str) -> str:
    """The session a request belongs to.

    `explicit` (the `x-session-id` header or an agent's own session header) wins when it is
    non-blank. Otherwise `"s-"` and 16 hex characters of a sha256 over the client key and a
    fingerprint of the first user message: stable over the turns of one chat, different for
    two chats of one user and for two users. The key itself never appears in the id.
    """
    if explicit is not None and explicit.strip():
        return explicit.strip()
    key = (client_key or "").encode("utf-8", "surrogatepass")
    digest = hashlib.sha256()
    digest.update(_DOMAIN)
    digest.update(len(key).to_bytes(8, "big"))
    digest.update(key)
    digest.update(_fingerprint(first_user_text))
    return "s-" + digest.hexdigest()[:16]


@dataclass
class Session:
    """One conversation's state. Every override is None until a command sets it."""

    id: str
    created: float
    last_seen: float
    model: str | None = None  # "backend:model"
    backend: str | None = None
    project: str | None = None
    temperature: float | None = None
    reasoning_effort: str | None = None
    thinking_budget: int | None = None
    redact_api_keys: bool | None = None
    loop_detection: bool | None = None
    command_prefix: str | None = None
    oneoff: str | None = None  # "backend:model" for the next request only
    requests: int = 0

    def take_oneoff(self) -> str | None:
        """The one-off target, cleared: the request that takes it is the only one to use it."""
        target, self.oneoff = self.oneoff, None
        return target


class SessionStore:
    """Sessions in memory, by id, kept in order of last use.

    A session idle for longer than `idle_seconds` is gone (checked from the least recently used
    end on each call, so the cost is amortised: each session is dropped once). When more than
    `max_sessions` exist the least recently used one is dropped. Both limits may be changed on
    a live store (options reloaded); they apply from the next call. One event loop uses it: no
    locks.
    """

    def __init__(
        self,
        idle_seconds: float = 3600,
        max_sessions: int = 10000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if idle_seconds <= 0:
            raise ValueError("idle_seconds must be positive")
        if max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.idle_seconds = idle_seconds
        self.max_sessions = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def _expire(self, now: float) -> None:
        """Drop, from the least recently used end, the idle sessions and any over the cap."""
        sessions = self._sessions
        while sessions:
            oldest = next(iter(sessions.values()))
            if len(sessions) <= self.max_sessions and now - oldest.last_seen <= self.idle_seconds:
                return
            sessions.popitem(last=False)

    def get(self, session_id: str) -> Session:
        """The session, created when new or expired; marked as used now."""
        now = self._clock()
        self._expire(now)
        session = self._sessions.get(session_id)
        if session is None:
            session = Session(session_id, created=now, last_seen=now)
            self._sessions[session_id] = session
            self._expire(now)
        else:
            session.last_seen = now
            self._sessions.move_to_end(session_id)
        return session

    def peek(self, session_id: str) -> Session | None:
        """The session if it exists and has not expired; neither created nor marked as used."""
        self._expire(self._clock())
        return self._sessions.get(session_id)

    def __contains__(self, session_id: object) -> bool:
        return isinstance(session_id, str) and self.peek(session_id) is not None

    def __len__(self) -> int:
        self._expire(self._clock())
        return len(self._sessions)

"""Routing addon: sends each LLM flow to its backend.

Turns the requested model (a failover route's name, `backend:model`, or a bare name for the
default backend) into a plan: the ordered attempts (backend, model, key) the request may make.
A bare `backend:model` plans every usable key of the backend's pool, from the pool's next key
on; a route plans by its policy (`protocol.failover`). The first attempt whose backend accepts
connections is sent: the canonical request rendered in the backend's protocol (or the client's
own body when the protocols match and nothing was edited), the flow's URL, headers and body
rewritten. The later attempts are the failover addon's. Token counting requests go to the
backend when it can count (same protocol) and are answered locally with tiktoken otherwise.
"""

from __future__ import annotations

import functools
import logging
import math
from collections.abc import Awaitable, Mapping
from dataclasses import dataclass

from mitmproxy import http

from addons._http import error_response, fail_closed, json_response
from addons.config import Config
from protocol import openai_chat, tokens
from protocol.backends import KINDS, ApiKey, Backend, RouteError, resolve_model
from protocol.codec import codec
from protocol.exchange import Attempt, Exchange, RoutePlan, exchange_of
from protocol.failover import Route, describe_failures, plan_attempts, split_element
from protocol.reasoning import fit_to_target
from protocol.wire import dumps_bytes

logger = logging.getLogger(__name__)

# Headers that carry the client's credentials or depend on the body/hop: never forwarded.
_AUTH = frozenset({b"authorization", b"x-api-key", b"x-goog-api-key"})
# ... and the proxy's own headers (`x-project` labels usage rows)
_HOP = frozenset(
    {b"content-length", b"content-encoding", b"transfer-encoding", b"accept-encoding", b"host",
     b"content-type", b"x-project"}
)  # fmt: skip
_DROP = _AUTH | _HOP
_DROP_KEEPING_AUTH = _HOP
# Headers of one vendor's SDK that mean nothing (or something wrong) to another vendor's API.
_VENDOR_PREFIXES = (b"anthropic-", b"openai-", b"x-stainless-", b"x-goog-", b"x-claude-code-")
SESSION_HEADER = b"x-llm-session"  # tells a local backend (the Gemini CLI) whose session it is
_FIXED = {b"accept-encoding": b"identity", b"content-type": b"application/json"}


@functools.lru_cache(maxsize=256)
def _added_headers(
    backend: Backend, key: ApiKey | None, keep_client_auth: bool
) -> dict[bytes, bytes]:
    """The headers routing sets: the backend's auth (unless the client's is kept) and fixed ones."""
    added = {
        name.encode(): value.encode()
        for name, value in backend.auth_headers(None if keep_client_auth else key).items()
    }
    added.update(_FIXED)
    return added


_HOST_BACKEND = {
    "api.openai.com": "openai",
    "openrouter.ai": "openrouter",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gemini",
}


@dataclass(slots=True)
class Outgoing:
    """One attempt's request as it goes upstream."""

    backend: Backend
    key: ApiKey | None
    path: str
    fields: list[tuple[bytes, bytes]]  # headers, `host` included for HTTP/1
    content: bytes

    @property
    def url(self) -> str:
        origin = self.backend.origin
        return f"{origin.scheme}://{self.backend.host_header}{self.path}"


class Routing:
    def __init__(self, config: Config) -> None:
        self.config = config

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        ex = exchange_of(flow.metadata)
        if ex is None or flow.response is not None:
            return None
        try:
            targets, backends = self._targets(flow, ex)
        except RouteError as e:
            ex.outcome, ex.status, ex.error = "error", e.status, str(e)
            flow.response = error_response(ex.front.protocol, e.status, str(e))
            return None
        attempts = plan_attempts(targets, self.config.pools, backends)
        ex.route = RoutePlan(attempts)
        ex.backends = backends
        if not attempts:
            self._nothing_to_try(flow, ex, targets)
            return None
        if ex.front.endpoint == "count_tokens":
            first = backends[attempts[0].backend]
            if first.protocol != ex.front.protocol:
                ex.route = RoutePlan(attempts[:1])
                self._count_locally(flow, ex)
                return None
        return self._send_first(flow, ex, 0)

    def _send_first(self, flow: http.HTTPFlow, ex: Exchange, start: int) -> Awaitable[None] | None:
        """Send the first attempt (from `start`) whose backend accepts connections. What is known
        of a host is used as is; an unknown host is probed first (then this goes on)."""
        attempts, backends = ex.route.attempts, ex.backends
        for index in range(start, len(attempts)):
            attempt = attempts[index]
            origin = backends[attempt.backend].origin
            known = self.config.reachability.known(origin.host, origin.port)
            if known is None:
                return self._probe_then_send(flow, ex, index)
            reachable, reason = known
            if reachable:
                ex.route.current = index
                ex.client_headers = flow.request.headers.fields  # a tuple: no copy needed
                out = self.outgoing(ex, attempt, backends, req_is_h2=not is_h1(flow.request))
                self.apply(flow.request, out)
                return None
            attempt.failure = f"unreachable: {reason}"
        ex.route.current = len(attempts)
        message = describe_failures(attempts)
        ex.outcome, ex.status, ex.error = "error", 502, message
        flow.response = error_response(ex.front.protocol, 502, message)
        return None

    async def _probe_then_send(self, flow: http.HTTPFlow, ex: Exchange, index: int) -> None:
        backend = ex.backends[ex.route.attempts[index].backend]
        origin = backend.origin
        connect = self.config.connect_timeout.get(backend.name)
        await self.config.reachability.check(origin.host, origin.port, connect)
        following = self._send_first(flow, ex, index)
        if following is not None:
            await following

    def _targets(self, flow: http.HTTPFlow, ex: Exchange) -> tuple[Route, Mapping[str, Backend]]:
        """The route the request takes: a named failover route, or the one backend:model
        it names (all of that backend's keys)."""
        routes = self.config.routes
        route = routes.get(ex.requested_model) if routes is not None else None
        if route is not None:
            return route, self.config.backends
        backend, model = self._resolve(flow, ex)
        return Route(backend.name, "km", [f"{backend.name}:{model}"]), {backend.name: backend}

    def _resolve(self, flow: http.HTTPFlow, ex: Exchange) -> tuple[Backend, str]:
        backends = self.config.backends
        if ex.front.arrival == "intercept":
            # a bare model on an intercepted call stays with the API the client called
            own = _HOST_BACKEND.get(flow.request.pretty_host)
            if own is not None and own not in backends:
                kind = KINDS[own]
                backends = {**backends, own: Backend(kind, kind.default_base_url)}
            return resolve_model(ex.requested_model, backends, own)
        return resolve_model(ex.requested_model, backends, self.config.default_backend)

    def outgoing(
        self,
        ex: Exchange,
        attempt: Attempt,
        backends: Mapping[str, Backend],
        *,
        req_is_h2: bool = False,
    ) -> Outgoing:
        """`attempt`'s request: path, headers (from the client's own) and body."""
        backend = backends[attempt.backend]
        key = _key(backend, attempt.key_id)
        model = attempt.model
        ex.backend_protocol = backend.protocol
        ex.request.model = model
        if ex.front.endpoint == "count_tokens":
            path = backend.count_tokens_path(model)
            body = self._forwarded_body(ex, model)
        else:
            path = backend.chat_path(model, ex.request.stream)
            body = self._render(ex, backend, model)
        assert path is not None
        fields = self._headers(ex, backend, key, req_is_h2)
        content = dumps_bytes(body)
        return Outgoing(backend, key, path, fields, content)

    @staticmethod
    def apply(req: http.Request, out: Outgoing) -> None:
        """Point the flow's request at `out`'s backend, field by field."""
        origin = out.backend.origin
        if not is_h1(req):
            req.data.authority = out.backend.host_header.encode()
        # set as raw data: the content setter (encoding, content-length) and header item
        # access each cost a walk over the fields
        content = out.content
        # the fields are bytes pairs made here: set on the request's own `Headers` (a new one
        # would check every field again)
        req.data.headers.fields = (*out.fields, (b"content-length", str(len(content)).encode()))
        req.data.method = b"POST"
        req.data.scheme = origin.scheme.encode()
        req.data.host = origin.host
        req.data.port = origin.port
        req.data.path = out.path.encode()
        req.data.content = content

    @staticmethod
    def _forwarded_body(ex: Exchange, model: str) -> dict:
        body = dict(ex.raw)
        if ex.front.protocol != "gemini":
            body["model"] = model
        return body

    def _render(self, ex: Exchange, backend: Backend, model: str) -> dict:
        notes = fit_to_target(ex.request, backend.protocol, model)
        if notes:
            ex.request_edited = True
            logger.debug("%s:%s: %s", backend.name, model, "; ".join(notes))
        if backend.protocol == ex.front.protocol and not ex.request_edited:
            return self._forwarded_body(ex, model)
        if backend.name == "openrouter":
            body = openai_chat.render_request(ex.request, dialect="openrouter")
        else:
            body = codec(backend.protocol).render_request(ex.request)
        if backend.protocol == "openai" and ex.converted:
            if ex.request.stream:
                # the client's protocol reports usage at the end of a stream: ask for it
                body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
            if backend.name == "openai" and "max_tokens" in body:
                # OpenAI's reasoning models reject max_tokens; every OpenAI model takes this
                body["max_completion_tokens"] = body.pop("max_tokens")
        return body

    @staticmethod
    def _headers(
        ex: Exchange, backend: Backend, key: ApiKey | None, req_is_h2: bool
    ) -> list[tuple[bytes, bytes]]:
        """The client's headers for `backend`, rebuilt in one pass."""
        keep_client_auth = key is None and ex.front.arrival == "intercept"
        drop = _DROP_KEEPING_AUTH if keep_client_auth else _DROP
        added = _added_headers(backend, key, keep_client_auth)
        client = ex.client_headers or ()
        if ex.converted:
            fields = [
                (k, v)
                for k, v in client
                if (low := k.lower()) not in drop
                and low not in added
                and not low.startswith(_VENDOR_PREFIXES)
            ]
        else:
            fields = [(k, v) for k, v in client if (low := k.lower()) not in drop]
            if b"anthropic-version" in added and any(
                k.lower() == b"anthropic-version" for k, _ in fields
            ):
                # the client's own API version, same protocol
                added = {k: v for k, v in added.items() if k != b"anthropic-version"}
            fields = [(k, v) for k, v in fields if k.lower() not in added]
        if not req_is_h2:
            fields.append((b"host", backend.host_header.encode()))
        fields.extend(added.items())
        if backend.kind.local and ex.front.session_id:
            fields.append((SESSION_HEADER, ex.front.session_id.encode()))
        return fields

    def _nothing_to_try(self, flow: http.HTTPFlow, ex: Exchange, route: Route) -> None:
        """No attempt is possible: every key is cooling (429, with the earliest end) or
        disabled (502)."""
        waits = []
        names = []
        for element in route.elements:
            name, model = split_element(element)
            pool = self.config.pools.get(name)
            if pool is not None:
                names.append(name)
                wait = pool.earliest_available(model)
                if wait is not None:
                    waits.append(wait)
        names_text = ", ".join(dict.fromkeys(names)) or "the backend"
        if not waits:
            status, headers = 502, {}
            message = f"every {names_text} key was rejected (401/403)"
        else:
            status = 429
            seconds = max(1, math.ceil(min(waits)))
            headers = {"retry-after": str(seconds)}
            message = (
                f"every {names_text} key is cooling down after rate limits; retry in {seconds} s"
            )
        ex.outcome, ex.status, ex.error = "error", status, message
        flow.response = error_response(ex.front.protocol, status, message, headers)

    @staticmethod
    def _count_locally(flow: http.HTTPFlow, ex: Exchange) -> None:
        count = tokens.count_request(ex.request)
        ex.outcome, ex.status = "local", 200
        if ex.front.protocol == "gemini":
            flow.response = json_response(200, {"totalTokens": count})
        else:
            flow.response = json_response(200, {"input_tokens": count})


def is_h1(req: http.Request) -> bool:
    return not (req.is_http2 or req.is_http3)


def _key(backend: Backend, key_id: str | None) -> ApiKey | None:
    if key_id is None:
        return None
    for key in backend.keys:
        if key.key_id == key_id:
            return key
    return None

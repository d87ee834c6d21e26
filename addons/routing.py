"""Routing addon: sends each LLM flow to its backend.

Turns the requested model (`backend:model`, or a bare name for the default backend) into a
backend and model, takes the backend's key, renders the canonical request in the backend's
protocol (or forwards the client's own body when the protocols match and nothing was edited)
and rewrites the flow's URL, headers and body. Token counting requests go to the backend when it
can count (same protocol) and are answered locally with tiktoken otherwise.
"""

from __future__ import annotations

import functools
import json
import logging
import math

from mitmproxy import http

from addons._http import error_response, fail_closed, json_response
from addons.config import Config
from protocol import tokens
from protocol.backends import KINDS, ApiKey, Backend, RouteError, resolve_model
from protocol.codec import codec
from protocol.exchange import Attempt, Exchange, RoutePlan, exchange_of

logger = logging.getLogger(__name__)

# Headers that carry the client's credentials or depend on the body/hop: never forwarded.
_AUTH = frozenset({b"authorization", b"x-api-key", b"x-goog-api-key"})
_HOP = frozenset({b"content-length", b"accept-encoding", b"host", b"content-type"})
_DROP = _AUTH | _HOP
_DROP_KEEPING_AUTH = _HOP
# Headers of one vendor's SDK that mean nothing (or something wrong) to another vendor's API.
_VENDOR_PREFIXES = (b"anthropic-", b"openai-", b"x-stainless-", b"x-goog-", b"x-claude-code-")
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

_HOST_BACKEND = {"api.openai.com": "openai", "openrouter.ai": "openrouter",
                 "api.anthropic.com": "anthropic", "generativelanguage.googleapis.com": "gemini"}


class Routing:
    def __init__(self, config: Config) -> None:
        self.config = config

    @fail_closed
    async def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        if ex is None or flow.response is not None:
            return
        try:
            backend, model = self._resolve(flow, ex)
        except RouteError as e:
            ex.outcome, ex.status, ex.error = "error", e.status, str(e)
            flow.response = error_response(ex.front.protocol, e.status, str(e))
            return
        ex.backend_protocol = backend.protocol
        ex.request.model = model
        counting = ex.front.endpoint == "count_tokens"
        if counting and backend.protocol != ex.front.protocol:
            ex.route = RoutePlan([Attempt(backend.name, model, None)])
            self._count_locally(flow, ex)
            return
        origin = backend.origin
        reachable, reason = await self.config.reachability.check(origin.host, origin.port)
        if not reachable:
            message = f"{backend.name} is unreachable: {reason}"
            ex.route = RoutePlan([Attempt(backend.name, model, None, reason)])
            ex.outcome, ex.status, ex.error = "error", 502, message
            flow.response = error_response(ex.front.protocol, 502, message)
            return
        pool = self.config.pools.get(backend.name)
        key = pool.next_key(model) if pool is not None else None
        if pool is not None and key is None:
            self._no_usable_key(flow, ex, backend, model)
            return
        ex.route = RoutePlan([Attempt(backend.name, model, key.key_id if key else None)])
        if counting:
            path = backend.count_tokens_path(model)
            body = self._forwarded_body(ex, model)
        else:
            path = backend.chat_path(model, ex.request.stream)
            body = self._render(ex, backend, model)
        assert path is not None
        self._rewrite(flow, ex, backend, key, path, body)

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

    @staticmethod
    def _forwarded_body(ex: Exchange, model: str) -> dict:
        body = dict(ex.raw)
        if ex.front.protocol != "gemini":
            body["model"] = model
        return body

    def _render(self, ex: Exchange, backend: Backend, model: str) -> dict:
        if backend.protocol == ex.front.protocol and not ex.request_edited:
            return self._forwarded_body(ex, model)
        body = codec(backend.protocol).render_request(ex.request)
        if backend.protocol == "openai" and ex.converted:
            if ex.request.stream:
                # the client's protocol reports usage at the end of a stream: ask for it
                body["stream_options"] = {**body.get("stream_options", {}), "include_usage": True}
            if backend.name == "openai" and "max_tokens" in body:
                # OpenAI's reasoning models reject max_tokens; every OpenAI model takes this
                body["max_completion_tokens"] = body.pop("max_tokens")
        return body

    def _rewrite(
        self,
        flow: http.HTTPFlow,
        ex: Exchange,
        backend: Backend,
        key: ApiKey | None,
        path: str,
        body: dict,
    ) -> None:
        """Point the flow at the backend: headers rebuilt in one pass, origin set field by field."""
        req = flow.request
        keep_client_auth = key is None and ex.front.arrival == "intercept"
        drop = _DROP_KEEPING_AUTH if keep_client_auth else _DROP
        added = _added_headers(backend, key, keep_client_auth)
        if ex.converted:
            fields = [
                (k, v)
                for k, v in req.headers.fields
                if (low := k.lower()) not in drop
                and low not in added
                and not low.startswith(_VENDOR_PREFIXES)
            ]
        else:
            fields = [(k, v) for k, v in req.headers.fields if (low := k.lower()) not in drop]
            if b"anthropic-version" in added and any(
                k.lower() == b"anthropic-version" for k, _ in fields
            ):
                # the client's own API version, same protocol
                added = {k: v for k, v in added.items() if k != b"anthropic-version"}
            fields = [(k, v) for k, v in fields if k.lower() not in added]
        origin = backend.origin
        if req.is_http2 or req.is_http3:
            req.data.authority = backend.host_header.encode()
        else:
            fields.append((b"host", backend.host_header.encode()))
        fields.extend(added.items())
        req.headers = http.Headers(fields)
        req.method = "POST"
        req.data.scheme = origin.scheme.encode()
        req.data.host = origin.host
        req.data.port = origin.port
        req.path = path
        req.content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    def _no_usable_key(self, flow: http.HTTPFlow, ex: Exchange, backend: Backend, model: str) -> None:
        """Every key of the backend is cooling (429, with the earliest end) or disabled (502)."""
        pool = self.config.pools[backend.name]
        wait = pool.earliest_available(model)
        if wait is None:
            status, headers = 502, {}
            message = f"every {backend.name} key was rejected by {backend.name} (401/403)"
        else:
            status = 429
            seconds = max(1, math.ceil(wait))
            headers = {"retry-after": str(seconds)}
            message = f"every {backend.name} key is cooling down after rate limits; retry in {seconds} s"
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


"""Routing addon: sends each LLM flow to its backend.

Turns the requested model (`backend:model`, or a bare name for the default backend) into a
backend and model, takes the backend's key, renders the canonical request in the backend's
protocol (or forwards the client's own body when the protocols match and nothing was edited)
and rewrites the flow's URL, headers and body. Token counting requests go to the backend when it
can count (same protocol) and are answered locally with tiktoken otherwise.
"""

from __future__ import annotations

import json
import logging

from mitmproxy import http

from addons._http import error_response, fail_closed, json_response
from addons.config import Config
from protocol import tokens
from protocol.backends import KINDS, ApiKey, Backend, RouteError, resolve_model
from protocol.codec import codec
from protocol.exchange import Attempt, Exchange, RoutePlan, exchange_of

logger = logging.getLogger(__name__)

# Headers that carry the client's credentials or depend on the body/hop: never forwarded.
_DROP = ("authorization", "x-api-key", "x-goog-api-key", "content-length", "accept-encoding")
# Headers of one vendor's SDK that mean nothing (or something wrong) to another vendor's API.
_VENDOR_PREFIXES = ("anthropic-", "openai-", "x-stainless-", "x-goog-", "x-claude-code-")

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
        key = backend.first_key()
        ex.route = RoutePlan([Attempt(backend.name, model, key.key_id if key else None)])
        ex.backend_protocol = backend.protocol
        ex.request.model = model
        if ex.front.endpoint == "count_tokens":
            if backend.protocol != ex.front.protocol:
                self._count_locally(flow, ex)
                return
            path = backend.count_tokens_path(model)
            body = self._forwarded_body(ex, model)
        else:
            path = backend.chat_path(model, ex.request.stream)
            body = self._render(ex, backend, model)
        assert path is not None
        self._rewrite(flow, ex, backend, key, path, body)
        reachable, reason = await self.config.reachability.check(
            flow.request.host, flow.request.port
        )
        if not reachable:
            message = f"{backend.name} is unreachable: {reason}"
            ex.outcome, ex.status, ex.error = "error", 502, message
            flow.response = error_response(ex.front.protocol, 502, message)

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
        req = flow.request
        headers = req.headers
        keep_client_auth = key is None and ex.front.arrival == "intercept"
        for name in _DROP:
            if keep_client_auth and name in ("authorization", "x-api-key", "x-goog-api-key"):
                continue
            headers.pop(name, None)
        if ex.converted:
            for name in [n for n in headers if n.lower().startswith(_VENDOR_PREFIXES)]:
                headers.pop(name, None)
        for name, value in backend.auth_headers(key).items():
            if name == "anthropic-version" and name in headers:
                continue  # the client's own API version, same protocol
            if keep_client_auth and name in ("authorization", "x-api-key", "x-goog-api-key"):
                continue
            headers[name] = value
        headers["accept-encoding"] = "identity"
        headers["content-type"] = "application/json"
        req.method = "POST"
        origin = backend.origin
        req.scheme = origin.scheme
        req.host = origin.host
        req.port = origin.port
        req.path = path
        req.content = json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()

    @staticmethod
    def _count_locally(flow: http.HTTPFlow, ex: Exchange) -> None:
        count = tokens.count_request(ex.request)
        ex.outcome, ex.status = "local", 200
        if ex.front.protocol == "gemini":
            flow.response = json_response(200, {"totalTokens": count})
        else:
            flow.response = json_response(200, {"input_tokens": count})


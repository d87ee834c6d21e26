"""Gateway addon: the front door of every LLM flow.

Recognises the client's protocol from the path (gateway listener) or the API host (intercepting
listener), checks the client's proxy key, parses the body into the canonical `ChatRequest` and
attaches the `Exchange` as `flow.metadata["llm"]`. Answers the proxy's own endpoints
(`/v1/models`, `/anthropic/v1/models`, `/v1beta/models`, `/health`, the base-URL probe) itself.
Anything it cannot parse is answered with the client protocol's error JSON; other flows (other
hosts in intercept mode) are left untouched.
"""

from __future__ import annotations

import asyncio
import functools
import hmac
import ipaddress
import logging
from collections.abc import Awaitable, Sequence

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from addons._http import body_bytes, error_response, fail_closed, headers_named, json_response
from addons.config import Config
from protocol import endpoints, openai_chat, tokens
from protocol.catalog import render_models
from protocol.codec import ProtocolError, codec
from protocol.exchange import Exchange, Front, exchange_of
from protocol.wire import loads

logger = logging.getLogger(__name__)

DEFAULT_INTERCEPT_HOSTS = list(endpoints.KNOWN_API_HOSTS)


# the request headers the chain reads: the client's key (each SDK's way), session, project
CLIENT_HEADERS = frozenset(
    {b"authorization", b"x-api-key", b"x-goog-api-key", b"x-session-id",
     b"x-claude-code-session-id", b"x-project"}
)  # fmt: skip


def client_key(request: http.Request, found: dict[bytes, str] | None = None) -> str | None:
    """The key a client sent, in whichever way its SDK sends it."""
    if found is None:
        found = headers_named(request, CLIENT_HEADERS)
    auth = found.get(b"authorization", "")
    if auth[:7].lower() == "bearer ":
        return auth[7:].strip()
    return (
        found.get(b"x-api-key")
        or found.get(b"x-goog-api-key")
        or (request.query.get("key") if "?" in request.path else None)
        or None
    )


def is_loopback(peername: tuple[str, int] | None) -> bool:
    return bool(peername) and _loopback_host(peername[0])  # type: ignore[index]


@functools.lru_cache(maxsize=1024)
def _loopback_host(host: str) -> bool:
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return address.is_loopback


def authorized(config: Config, flow: http.HTTPFlow, given: str | None = None) -> bool:
    """The client sent the proxy key (or, with none set, connects from this machine). `given`:
    the key the client sent when the caller has read it already (`client_key`)."""
    expected = config.proxy_key
    if expected is None:
        return is_loopback(flow.client_conn.peername)
    if given is None:
        given = client_key(flow.request)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


class Gateway:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.intercept_hosts: frozenset[str] = frozenset(DEFAULT_INTERCEPT_HOSTS)

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_intercept_hosts",
            Sequence[str],
            DEFAULT_INTERCEPT_HOSTS,
            "API hosts whose traffic on the intercepting listener goes through the chain.",
        )
        loader.add_option(
            "llm_models_cache_seconds", int, 60, "How long a backend's model list is cached."
        )

    def configure(self, updated: set[str]) -> None:
        if "llm_intercept_hosts" in updated:
            self.intercept_hosts = frozenset(ctx.options.llm_intercept_hosts)
        if "llm_models_cache_seconds" in updated:
            self.config.catalog.ttl = ctx.options.llm_models_cache_seconds

    async def running(self) -> None:
        # import the codecs and load the token encodings now, not on the first request
        for name in ("openai", "anthropic", "gemini"):
            codec(name)
        await asyncio.to_thread(tokens.encoding, "o200k_base")

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        if flow.response is not None or exchange_of(flow.metadata) is not None:
            return None
        req = flow.request
        mode = flow.client_conn.proxy_mode.type_name
        intercepted = mode != "reverse"
        if intercepted and req.pretty_host not in self.intercept_hosts:
            return None  # not an LLM API host: pass through untouched
        path = req.path.split("?", 1)[0]
        endpoint = endpoints.match(req.method, path)
        if endpoint is None:
            protocol = endpoints.protocol_guess(path, req.pretty_host if intercepted else None)
            if intercepted:
                return None  # another endpoint of a known API host (files, batches...): untouched
            flow.response = error_response(protocol, 404, f"unknown endpoint: {req.method} {path}")
            return None
        found = headers_named(req, CLIENT_HEADERS)
        key = client_key(req, found)
        if not intercepted and not authorized(self.config, flow, key):
            message = (
                "invalid or missing proxy API key"
                if self.config.proxy_key
                else "only local clients are accepted while LLM_INTERACTIVE_PROXY_API_KEY is unset"
            )
            flow.response = error_response(endpoint.protocol, 401, message)
            return None
        if endpoint.kind == "probe" or endpoint.kind == "health":
            flow.response = json_response(200, {"status": "ok"})
            if req.method == "HEAD":
                flow.response.content = b""
            return None
        if endpoint.kind == "models":
            return self._models(flow, endpoint)
        self._parse(flow, endpoint, "intercept" if intercepted else "gateway", found, key)
        return None

    async def _models(self, flow: http.HTTPFlow, endpoint: endpoints.Endpoint) -> None:
        req = flow.request
        protocol = endpoint.protocol
        if "x-goog-api-client" in req.headers or "x-goog-api-key" in req.headers:
            protocol = "gemini"  # google-genai lists models at /v1/models too
        models = await self.config.catalog.models(self.config.backends)
        routes = self.config.routes.names() if self.config.routes is not None else ()
        flow.response = json_response(200, render_models(protocol, models, routes))

    def _parse(
        self,
        flow: http.HTTPFlow,
        endpoint: endpoints.Endpoint,
        arrival: str,
        found: dict[bytes, str],
        key: str | None,
    ) -> None:
        protocol = endpoint.protocol
        try:
            body = loads(body_bytes(flow.request))
        except (ValueError, UnicodeDecodeError) as e:
            flow.response = error_response(protocol, 400, f"request body is not valid JSON: {e}")
            return
        if not isinstance(body, dict):
            flow.response = error_response(protocol, 400, "request body must be a JSON object")
            return
        counting = endpoint.kind == "count_tokens"
        kwargs: dict[str, object] = {}
        if protocol == "gemini":
            kwargs = {"model": endpoint.model, "stream": bool(endpoint.stream)}
        elif protocol == "anthropic" and counting:
            kwargs = {"count_tokens": True}
        if protocol == "openai" and isinstance(body, dict) and "tools" in body:
            removed = openai_chat.drop_stray_fields(body)
            if removed:
                logger.debug("dropped fields the API rejects: %s", ", ".join(removed))
        try:
            chat = codec(protocol).parse_request(body, **kwargs)
        except ProtocolError as e:
            flow.response = error_response(protocol, 400, str(e))
            return
        front = Front(
            protocol=protocol,
            arrival="intercept" if arrival == "intercept" else "gateway",
            endpoint="count_tokens" if counting else "chat",
            client_stream=chat.stream and not counting,
        )
        flow.metadata["llm"] = Exchange(
            front=front,
            request=chat,
            raw=body,
            requested_model=chat.model,
            client_line=f"{flow.request.method} {flow.request.path}",
            client_model=chat.model,
            project=found.get(b"x-project") or None,
            session_header=found.get(b"x-session-id") or found.get(b"x-claude-code-session-id"),
            client_key=key,
        )

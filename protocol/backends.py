"""The backends the proxy can reach: how each is addressed and authenticated, and its keys.

A backend is an API family at a base URL (`OPENAI_API_BASE_URL` ... override the defaults) with
a pool of keys read from the environment (`OPENAI_API_KEY`, `OPENAI_API_KEY_1` ... `_N`, gaps
allowed). `resolve_model` turns what a client asked for (`openai:gpt-4o`, a bare name) into a
backend and the model name that backend knows.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import cached_property
from typing import Literal, NamedTuple
from urllib.parse import urlsplit

from protocol.canonical import ProtocolName

AuthStyle = Literal["bearer", "x-api-key", "x-goog-api-key"]


@dataclass(frozen=True, slots=True)
class BackendKind:
    name: str
    protocol: ProtocolName
    default_base_url: str
    auth: AuthStyle
    env_prefix: str
    alias_of: str | None = None  # the same API, keys and models, spoken in another protocol
    local: bool = False  # run by the proxy itself (configured by its addon, not by keys)


KINDS: dict[str, BackendKind] = {
    k.name: k
    for k in (
        BackendKind("openai", "openai", "https://api.openai.com/v1", "bearer", "OPENAI"),
        BackendKind(
            "openrouter", "openai", "https://openrouter.ai/api/v1", "bearer", "OPENROUTER"
        ),
        # OpenAI's Responses API (`openai-responses:o3-pro`): models that answer only there
        BackendKind(
            "openai-responses",
            "responses",
            "https://api.openai.com/v1",
            "bearer",
            "OPENAI",
            alias_of="openai",
        ),
        # the local Gemini CLI, run by the proxy per request (`gemini-cli-direct:gemini-2.5-pro`)
        BackendKind(
            "gemini-cli-direct",
            "openai",
            "http://127.0.0.1:9/v1",
            "bearer",
            "GEMINI_CLI",
            local=True,
        ),
        BackendKind(
            "anthropic", "anthropic", "https://api.anthropic.com/v1", "x-api-key", "ANTHROPIC"
        ),
        BackendKind(
            "gemini",
            "gemini",
            "https://generativelanguage.googleapis.com/v1beta",
            "x-goog-api-key",
            "GEMINI",
        ),
    )
}

ANTHROPIC_VERSION = "2023-06-01"
OPENROUTER_REFERER = "https://github.com/llm-interactive-proxy"
OPENROUTER_TITLE = "LLM Interactive Proxy"


class RouteError(Exception):
    """The requested model names no usable backend (answered 404)."""

    status = 404


@dataclass(frozen=True, slots=True)
class ApiKey:
    key_id: str  # the variable that holds it: never the key itself
    value: str


class Origin(NamedTuple):
    scheme: str
    host: str
    port: int
    path: str  # the base URL's path, without a trailing slash


@dataclass
class Backend:
    kind: BackendKind
    base_url: str
    keys: list[ApiKey] = field(default_factory=list)
    referer: str = OPENROUTER_REFERER
    title: str = OPENROUTER_TITLE

    @property
    def name(self) -> str:
        return self.kind.name

    @property
    def protocol(self) -> ProtocolName:
        return self.kind.protocol

    @cached_property
    def origin(self) -> Origin:
        """The base URL taken apart once (requests are pointed at it field by field)."""
        parts = urlsplit(self.base_url)
        scheme = parts.scheme or "https"
        port = parts.port or (443 if scheme == "https" else 80)
        return Origin(scheme, parts.hostname or "", port, parts.path.rstrip("/"))

    @cached_property
    def host_header(self) -> str:
        o = self.origin
        default = 443 if o.scheme == "https" else 80
        return o.host if o.port == default else f"{o.host}:{o.port}"

    def __hash__(self) -> int:
        return id(self)

    def __eq__(self, other: object) -> bool:
        return self is other

    def chat_path(self, model: str, stream: bool) -> str:
        """The chat endpoint's path (with query) below the origin."""
        base = self.origin.path
        if self.protocol == "openai":
            return f"{base}/chat/completions"
        if self.protocol == "responses":
            return f"{base}/responses"
        if self.protocol == "anthropic":
            return f"{base}/messages"
        method = "streamGenerateContent?alt=sse" if stream else "generateContent"
        return f"{base}/models/{model}:{method}"

    def count_tokens_path(self, model: str) -> str | None:
        base = self.origin.path
        if self.protocol == "anthropic":
            return f"{base}/messages/count_tokens"
        if self.protocol == "gemini":
            return f"{base}/models/{model}:countTokens"
        return None

    def models_url(self) -> str:
        return f"{self.base_url}/models"

    def auth_header(self, secret: str) -> tuple[str, str]:
        """The header that carries `secret` to this backend: (name, value)."""
        if self.kind.auth == "bearer":
            return "authorization", f"Bearer {secret}"
        return self.kind.auth, secret

    def auth_headers(self, key: ApiKey | None) -> dict[str, str]:
        """The headers that authenticate to this backend (and that it requires besides)."""
        headers: dict[str, str] = {}
        if key is not None:
            name, value = self.auth_header(key.value)
            headers[name] = value
        if self.protocol == "anthropic":
            headers["anthropic-version"] = ANTHROPIC_VERSION
        if self.name == "openrouter":
            headers["http-referer"] = self.referer
            headers["x-title"] = self.title
        return headers

    def first_key(self) -> ApiKey | None:
        return self.keys[0] if self.keys else None


_NUMBERED = re.compile(r"^(?P<prefix>[A-Z]+)_API_KEY(?:_(?P<n>\d+))?$")


def read_keys(env: Mapping[str, str], prefix: str) -> list[ApiKey]:
    """`<PREFIX>_API_KEY` first, then `<PREFIX>_API_KEY_1` ... in numeric order, gaps allowed."""
    found: list[tuple[int, ApiKey]] = []
    for name, value in env.items():
        match = _NUMBERED.match(name)
        if not match or match["prefix"] != prefix or not value.strip():
            continue
        order = int(match["n"]) if match["n"] else -1
        found.append((order, ApiKey(name, value.strip())))
    found.sort(key=lambda item: item[0])
    return [key for _, key in found]


def load_backends(env: Mapping[str, str]) -> dict[str, Backend]:
    """The configured backends, in the order of `KINDS`.

    A backend is configured when it has a key or its base URL is set explicitly (a local
    OpenAI-compatible server may need no key).
    """
    backends: dict[str, Backend] = {}
    for kind in KINDS.values():
        if kind.local:
            continue
        keys = read_keys(env, kind.env_prefix)
        base = env.get(f"{kind.env_prefix}_API_BASE_URL", "").strip()
        if not keys and not base:
            continue
        backend = Backend(kind, (base or kind.default_base_url).rstrip("/"), keys)
        if kind.name == "openrouter":
            backend.referer = env.get("OPENROUTER_REFERER", OPENROUTER_REFERER)
            backend.title = env.get("OPENROUTER_TITLE", OPENROUTER_TITLE)
        backends[kind.name] = backend
    return backends


def default_backend(backends: Mapping[str, Backend], env: Mapping[str, str]) -> str | None:
    """`LLM_BACKEND` when it names a configured backend, else the first configured one."""
    wanted = env.get("LLM_BACKEND", "").strip()
    if wanted and wanted in backends:
        return wanted
    return next(iter(backends), None)


def resolve_model(
    requested: str, backends: Mapping[str, Backend], default: str | None
) -> tuple[Backend, str]:
    """`backend:model` picks the backend; a bare name goes to the default backend.

    `openai-responses:` is the `openai` backend (same keys and base URL) spoken in the
    Responses API.

    Raises RouteError for an unknown or unconfigured backend prefix, or when no backend is
    configured at all.
    """
    prefix, sep, rest = requested.partition(":")
    if sep and prefix in KINDS:
        if prefix not in backends:
            raise RouteError(
                f"backend '{prefix}' is not configured: set {KINDS[prefix].env_prefix}_API_KEY"
            )
        if not rest:
            raise RouteError(f"model '{requested}' names no model after '{prefix}:'")
        return backends[prefix], rest
    if sep and "/" not in prefix and prefix.isidentifier():
        raise RouteError(
            f"unknown backend '{prefix}' in model '{requested}'; known backends: "
            f"{', '.join(KINDS)} (to send a name with a colon as it is, prefix it: "
            f"openai:{requested})"
        )
    if default is None or default not in backends:
        raise RouteError("no backend is configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, ...")
    if not requested:
        raise RouteError("the request names no model")
    return backends[default], requested

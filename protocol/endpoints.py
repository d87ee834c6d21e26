"""Which API endpoint a request is for, from its path (gateway) or host and path (intercept).

Gateway paths (base URLs clients are given): `/v1` (OpenAI chat completions and Responses),
`/anthropic` and the root
(Anthropic: `/anthropic/v1/messages`, `/v1/messages`), and the root for google-genai
(`/v1beta/models/{model}:generateContent`). Intercepted requests keep the real API's paths.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

from protocol.canonical import ProtocolName

Kind = Literal["chat", "count_tokens", "models", "health", "probe"]


@dataclass(frozen=True, slots=True)
class Endpoint:
    protocol: ProtocolName
    kind: Kind
    model: str | None = None  # Gemini: from the path
    stream: bool | None = None  # Gemini: from the method in the path


_GEMINI = re.compile(r"^/(?:gemini/)?v1(?:beta|alpha)?/models/(?P<model>.+):(?P<method>[A-Za-z]+)$")
_GEMINI_LIST = re.compile(r"^/(?:gemini/)?v1(?:beta|alpha)?/models/?$")

_FIXED: dict[tuple[str, str], Endpoint] = {
    ("POST", "/v1/chat/completions"): Endpoint("openai", "chat"),
    ("POST", "/chat/completions"): Endpoint("openai", "chat"),
    ("POST", "/api/v1/chat/completions"): Endpoint("openai", "chat"),  # openrouter.ai paths
    ("POST", "/v1/responses"): Endpoint("responses", "chat"),
    ("POST", "/responses"): Endpoint("responses", "chat"),
    ("GET", "/v1/models"): Endpoint("openai", "models"),
    ("GET", "/models"): Endpoint("openai", "models"),
    ("GET", "/api/v1/models"): Endpoint("openai", "models"),
    ("POST", "/v1/messages"): Endpoint("anthropic", "chat"),
    ("POST", "/anthropic/v1/messages"): Endpoint("anthropic", "chat"),
    ("POST", "/v1/messages/count_tokens"): Endpoint("anthropic", "count_tokens"),
    ("POST", "/anthropic/v1/messages/count_tokens"): Endpoint("anthropic", "count_tokens"),
    ("GET", "/anthropic/v1/models"): Endpoint("anthropic", "models"),
    ("GET", "/health"): Endpoint("openai", "health"),
}

KNOWN_API_HOSTS: dict[str, ProtocolName] = {
    "api.openai.com": "openai",
    "openrouter.ai": "openai",
    "api.anthropic.com": "anthropic",
    "generativelanguage.googleapis.com": "gemini",
}


def match(method: str, path: str) -> Endpoint | None:
    """The endpoint for a method and a path without its query string, or None."""
    path = path.rstrip("/") or "/"
    if method in ("HEAD", "GET") and path in ("/", "/anthropic"):
        return Endpoint("anthropic" if path == "/anthropic" else "openai", "probe")
    found = _FIXED.get((method, path))
    if found is not None:
        return found
    if method == "GET" and _GEMINI_LIST.match(path):
        return Endpoint("gemini", "models")
    m = _GEMINI.match(path)
    if m and method == "POST":
        action = m["method"]
        if action == "generateContent":
            return Endpoint("gemini", "chat", m["model"], False)
        if action == "streamGenerateContent":
            return Endpoint("gemini", "chat", m["model"], True)
        if action == "countTokens":
            return Endpoint("gemini", "count_tokens", m["model"], False)
    return None


def protocol_guess(path: str, host: str | None = None) -> ProtocolName:
    """The protocol an unknown request most likely speaks, for its error body."""
    if host and host in KNOWN_API_HOSTS:
        return KNOWN_API_HOSTS[host]
    if path.startswith("/anthropic") or path.startswith("/v1/messages"):
        return "anthropic"
    if path.startswith("/v1beta") or ":generateContent" in path:
        return "gemini"
    return "openai"

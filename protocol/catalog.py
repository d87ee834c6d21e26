"""The model catalog: what the configured backends offer, fetched from them and cached briefly.

Each backend's own list endpoint is asked (OpenAI/OpenRouter `GET /models` `data[].id`,
Anthropic `GET /models` `data[].id`, Gemini `GET /models` `models[].name`); names are offered
to clients as `backend:model`, so any of them can be sent back as a model. A backend that does
not answer is left out of the list (and logged), never fails the whole list.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Mapping, Sequence
from typing import Any

import httpx

from protocol.backends import Backend

logger = logging.getLogger(__name__)


def model_ids(backend: Backend, body: Any) -> list[str]:
    """The model ids in a backend's list response."""
    if not isinstance(body, dict):
        return []
    if backend.protocol == "gemini":
        items = body.get("models") or []
        names = [str(m.get("name", "")) for m in items if isinstance(m, dict)]
        return [n.removeprefix("models/") for n in names if n]
    items = body.get("data") or []
    return [str(m["id"]) for m in items if isinstance(m, dict) and m.get("id")]


class ModelCatalog:
    def __init__(self, ttl: float = 60.0, timeout: float = 10.0) -> None:
        self.ttl = ttl
        self.timeout = timeout
        self._cache: dict[str, tuple[float, list[str]]] = {}
        self._lock = asyncio.Lock()
        self._refresh: asyncio.Future[dict[str, list[str]]] | None = None

    def invalidate(self) -> None:
        self._cache.clear()

    def snapshot(self, backends: Mapping[str, Backend]) -> dict[str, list[str]]:
        """What is cached now, never waiting; a stale or missing list is refreshed behind."""
        backends = _listed(backends)
        now = time.monotonic()
        if any(
            name not in self._cache or now - self._cache[name][0] > self.ttl for name in backends
        ) and (self._refresh is None or self._refresh.done()):
            self._refresh = asyncio.ensure_future(self.models(backends))
        return {name: self._cache[name][1] for name in backends if name in self._cache}

    async def models(self, backends: Mapping[str, Backend]) -> dict[str, list[str]]:
        """backend name -> model ids, from cache when fresh."""
        backends = _listed(backends)
        async with self._lock:
            now = time.monotonic()
            stale = [
                b for name, b in backends.items()
                if name not in self._cache or now - self._cache[name][0] > self.ttl
            ]
            if stale:
                async with httpx.AsyncClient(timeout=self.timeout, trust_env=False) as client:
                    results = await asyncio.gather(
                        *(self._fetch(client, b) for b in stale), return_exceptions=True
                    )
                for backend, result in zip(stale, results, strict=True):
                    if isinstance(result, BaseException):
                        logger.warning(
                            "model list of %s unavailable: %s", backend.name, type(result).__name__
                        )
                        continue
                    self._cache[backend.name] = (now, result)
            return {name: self._cache[name][1] for name in backends if name in self._cache}

    async def _fetch(self, client: httpx.AsyncClient, backend: Backend) -> list[str]:
        headers = backend.auth_headers(backend.first_key())
        response = await client.get(backend.models_url(), headers=headers)
        response.raise_for_status()
        return model_ids(backend, response.json())


def _listed(backends: Mapping[str, Backend]) -> dict[str, Backend]:
    """The backends with a model list of their own (an alias such as `openai-responses`
    shares its API's)."""
    return {
        name: b for name, b in backends.items() if b.kind.alias_of is None and not b.kind.local
    }


def render_models(
    protocol: str, models: Mapping[str, list[str]], routes: Sequence[str] = ()
) -> dict[str, Any]:
    """The list in the client protocol's own shape, names as `backend:model`, then the
    failover routes' names (owned by `llm-interactive-proxy`)."""
    ids = [(backend, f"{backend}:{m}") for backend, names in models.items() for m in names]
    ids += [("llm-interactive-proxy", name) for name in routes]
    if protocol == "anthropic":
        data = [
            {"type": "model", "id": i, "display_name": i, "created_at": "1970-01-01T00:00:00Z"}
            for _, i in ids
        ]
        return {
            "data": data,
            "has_more": False,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        }
    if protocol == "gemini":
        return {
            "models": [
                {
                    "name": f"models/{i}",
                    "displayName": i,
                    "supportedGenerationMethods": [
                        "generateContent",
                        "streamGenerateContent",
                        "countTokens",
                    ],
                }
                for _, i in ids
            ]
        }
    return {
        "object": "list",
        "data": [{"id": i, "object": "model", "created": 0, "owned_by": b} for b, i in ids],
    }

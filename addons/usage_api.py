"""Usage API addon: `GET /usage/stats`, `GET /usage/recent` and `GET /metrics` on the gateway.

The JSON shapes are documented in `protocol/usage_store.py`. The endpoints take the proxy key
like every other gateway endpoint; queries run on a worker thread, never on the event loop,
after the usage writer has committed every row recorded before them (read your own writes).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable

from mitmproxy import http

from addons._http import fail_closed, json_response
from addons.config import Config
from addons.gateway import authorized
from protocol.usage_store import UsageFilters, UsageStore

logger = logging.getLogger(__name__)

PATHS = ("/usage/stats", "/usage/recent", "/metrics")
FLUSH_SECONDS = 2.0  # how long a query waits for the writer to commit the rows queued before it


def _error(status: int, message: str) -> http.Response:
    return json_response(status, {"error": {"message": message, "code": status}})


class UsageApi:
    def __init__(self, config: Config) -> None:
        self.config = config

    @fail_closed
    def request(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """Sync for every other request (the chain's `request` stays sync); a usage endpoint's
        query runs in a thread."""
        req = flow.request
        if flow.response is not None or req.method != "GET":
            return None
        path = req.path.split("?", 1)[0].rstrip("/")
        if path not in PATHS or flow.client_conn.proxy_mode.type_name != "reverse":
            return None
        if not authorized(self.config, flow):
            flow.response = _error(401, "invalid or missing proxy API key")
            return None
        store = self.config.usage_store
        if store is None:
            flow.response = _error(503, "usage recording is not running")
            return None
        if path == "/metrics":
            flow.response = http.Response.make(
                200, store.metrics_text(), {"content-type": "text/plain; version=0.0.4"}
            )
            return None
        return self._query(flow, store, path)

    async def _query(self, flow: http.HTTPFlow, store: UsageStore, path: str) -> None:
        req = flow.request
        params = dict(req.query.items())
        try:
            filters = UsageFilters.from_query(params)
            # every exchange that finished before this query is in its answer
            await asyncio.to_thread(store.flush, FLUSH_SECONDS)
            if path == "/usage/stats":
                body = await asyncio.to_thread(store.stats, filters, params.get("group_by"))
            else:
                limit = int(params.get("limit", "50"))
                if limit < 1:
                    raise ValueError("limit must be at least 1")
                limit = min(limit, 1000)
                rows = await asyncio.to_thread(store.recent, filters, limit)
                body = {"filters": filters.as_json(), "limit": limit, "rows": rows}
        except ValueError as e:
            flow.response = _error(400, str(e))
            return
        flow.response = json_response(200, body)

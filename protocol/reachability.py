"""Whether a backend's host answers at all, known before a request is sent to it.

mitmproxy answers a failed upstream connection with its own HTML 502 page, which no LLM SDK can
read. So before the first request to a host (and again after a failure), a plain TCP connect
checks it; a host that refused is answered by the proxy itself, in the client's protocol,
until the next check. A host that worked is trusted for `ttl_ok` seconds; any successful
response refreshes that, so a busy backend is never probed.
"""

from __future__ import annotations

import asyncio
import contextlib
import time


class Reachability:
    def __init__(self, ttl_ok: float = 30.0, ttl_down: float = 2.0, timeout: float = 5.0) -> None:
        self.ttl_ok = ttl_ok
        self.ttl_down = ttl_down
        self.timeout = timeout
        self._state: dict[tuple[str, int], tuple[bool, float, str]] = {}
        self._probes: dict[tuple[str, int], asyncio.Task[tuple[bool, str]]] = {}

    def mark_ok(self, host: str, port: int) -> None:
        self._state[(host, port)] = (True, time.monotonic(), "")

    def mark_down(self, host: str, port: int, reason: str) -> None:
        self._state[(host, port)] = (False, time.monotonic(), reason)

    def known(self, host: str, port: int) -> tuple[bool, str] | None:
        """What is known and still fresh of this host, without probing (None: probe it)."""
        known = self._state.get((host, port))
        if known is None:
            return None
        ok, when, reason = known
        if time.monotonic() - when < (self.ttl_ok if ok else self.ttl_down):
            return ok, reason
        return None

    async def check(self, host: str, port: int, timeout: float | None = None) -> tuple[bool, str]:
        """(reachable, reason when not). Concurrent checks of one host share one probe, which
        waits `timeout` seconds (default `self.timeout`) for the connection."""
        key = (host, port)
        known = self._state.get(key)
        now = time.monotonic()
        if known is not None:
            ok, when, reason = known
            if now - when < (self.ttl_ok if ok else self.ttl_down):
                return ok, reason
        task = self._probes.get(key)
        if task is None:
            task = asyncio.ensure_future(self._probe(host, port, timeout or self.timeout))
            self._probes[key] = task
            task.add_done_callback(lambda _: self._probes.pop(key, None))
        return await asyncio.shield(task)

    async def _probe(self, host: str, port: int, timeout: float) -> tuple[bool, str]:
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout=timeout)
        except TimeoutError:
            reason = f"connecting to {host}:{port} timed out after {timeout:g} s"
        except OSError as e:
            reason = f"cannot connect to {host}:{port}: {e.strerror or type(e).__name__}"
        else:
            writer.close()
            with contextlib.suppress(OSError):
                await writer.wait_closed()
            self.mark_ok(host, port)
            return True, ""
        self.mark_down(host, port, reason)
        return False, reason

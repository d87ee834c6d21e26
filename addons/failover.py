"""Failover addon: when an attempt fails, the plan's next attempts are tried, invisibly.

The first attempt goes upstream through mitmproxy itself (routing), so a request whose first
attempt works pays nothing here. When its answer's status calls for failover (408, 409, 429,
5xx, 529; 401/403 too, which disable that key) and the plan has more attempts, this addon holds
the flow in `responseheaders`, drops the failed answer (`addons._inject`), and sends the next
attempts itself with an HTTP client until one works. That attempt's status and headers become
the flow's response and its body is fed to the flow chunk by chunk as it arrives, so the rest
of the chain (stream conversion, loop watch, usage) sees it as the upstream's answer and a
streaming client gets the fallback's chunks live. When every attempt fails, the client gets
one error in its own protocol with the last attempt's status (502 when none answered) that
lists every attempt. Each failed attempt's key is cooled (429) or disabled (401/403).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Coroutine, Mapping
from typing import Any

import httpx
from mitmproxy import http

from addons._http import dumps, spawn
from addons._inject import ResponseFeed
from addons.config import Config
from addons.routing import Outgoing, Routing, is_h1
from protocol.codec import codec
from protocol.exchange import Attempt, Exchange, exchange_of
from protocol.failover import (
    KEY_REJECTED_STATUSES,
    describe_failures,
    failure_text,
    should_fail_over,
)
from protocol.keypool import parse_retry_after
from protocol.pipeline import StreamPipeline

logger = logging.getLogger(__name__)

# Response headers that describe the upstream connection's framing, not the answer.
_FRAMING = frozenset({"content-length", "transfer-encoding", "connection", "keep-alive"})
_ERROR_BODY_LIMIT = 64 * 1024


def account_attempt(
    config: Config, attempt: Attempt, status: int, headers: Mapping[str, str], body: bytes
) -> None:
    """What an attempt's answer means for its key: 429 cools it, 401/403 disable it."""
    pool = config.pools.get(attempt.backend)
    if pool is None or attempt.key_id is None:
        return
    if status == 429:
        pool.cooldown(attempt.key_id, attempt.model, parse_retry_after(headers, body, time.time()))
    elif status in KEY_REJECTED_STATUSES:
        pool.disable(attempt.key_id)
    elif status < 400:
        pool.succeeded(attempt.key_id, attempt.model)


def _more(ex: Exchange) -> bool:
    """Whether the plan has an attempt after the active one."""
    return ex.route.current + 1 < len(ex.route.attempts)


class Failover:
    def __init__(self, config: Config, routing: Routing) -> None:
        self.config = config
        self.routing = routing
        self._client: httpx.AsyncClient | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    def responseheaders(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        # a plain function, a coroutine only when there is failover work: the answers that
        # need none (nearly all) cost no coroutine (mitmproxy awaits what a hook returns)
        ex = exchange_of(flow.metadata)
        resp = flow.response
        if ex is None or resp is None or ex.outcome != "pending":
            return None
        if not should_fail_over(resp.status_code) or not _more(ex):
            return None
        if resp.headers.get("content-length") == "0":
            return None  # mitmproxy ends a body-less answer with its headers: nothing to replace
        return self._fail_over(flow, ex, resp)

    async def _fail_over(self, flow: http.HTTPFlow, ex: Exchange, resp: http.Response) -> None:
        feed = ResponseFeed.attach(flow)
        if feed is None:
            return
        if not await feed.wait_upstream_complete(2.0):
            feed.detach()
            return  # the failed answer's body never ended: relay it as it is
        failed = ex.route.active
        assert failed is not None
        body = feed.take_pending()
        failed.failure = failure_text(resp.status_code, resp.reason)
        account_attempt(self.config, failed, resp.status_code, resp.headers, body)
        try:
            result = await self._rest(ex, resp.status_code)
        except Exception:
            logger.exception("failover failed")
            result = 502
        h2 = not is_h1(flow.request)
        if isinstance(result, int):
            flow.response, content = self._all_failed(flow, ex, result)
            self._spawn(self._send_body(feed, content))
        else:
            out, answer = result
            flow.response = self._adopt(flow, ex, out, answer, h2)
            self._spawn(self._pump(answer, feed, ex))

    def error(self, flow: http.HTTPFlow) -> Awaitable[None] | None:
        """The attempt's connection failed (reset, refused) before any answer: mitmproxy would
        answer its own 502; the plan's next attempts answer instead. A streamed answer that
        broke half way ends with an error event in the client's protocol instead of a cut."""
        ex = exchange_of(flow.metadata)
        if ex is None:
            return None
        if flow.response is not None:
            return self._broken_stream(flow, ex)
        if ex.outcome != "pending" or not _more(ex):
            return None
        return self._connection_failed(flow, ex)

    async def _connection_failed(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        if flow.error is None or flow.error.msg == flow.error.KILLED_MESSAGE:
            return
        feed = ResponseFeed.attach(flow)
        if feed is None or not feed.can_resume():
            return
        failed = ex.route.active
        assert failed is not None
        failed.failure = f"connection error: {flow.error.msg}"[:300]
        if flow.server_conn.timestamp_tcp_setup is None:  # never connected: skip it a while
            self.config.reachability.mark_down(flow.request.host, flow.request.port, failed.failure)
        ex.resuming = True  # the other addons leave this error alone
        try:
            result = await self._rest(ex, None)
        except Exception:
            logger.exception("failover failed")
            result = 502
        feed.suppress_error()
        if isinstance(result, int):
            response, content = self._all_failed(flow, ex, result)
            self._spawn(self._resume(feed, ex, response, content=content))
        else:
            out, answer = result
            response = self._adopt(flow, ex, out, answer, not is_h1(flow.request))
            self._spawn(self._resume(feed, ex, response, answer=answer))

    async def _broken_stream(self, flow: http.HTTPFlow, ex: Exchange) -> None:
        pipeline = flow.response.stream if flow.response is not None else None
        if not isinstance(pipeline, StreamPipeline) or pipeline.ended:
            return
        if flow.error is None or flow.error.msg == flow.error.KILLED_MESSAGE:
            return
        feed = ResponseFeed.attach(flow)
        if feed is None or not feed.can_resume():
            return
        message = f"the backend's stream broke: {flow.error.msg}"[:300]
        logger.warning("%s %s: %s", flow.request.method, flow.request.pretty_url, message)
        ex.resuming = True
        feed.suppress_error()

        async def finish() -> None:
            ok = await feed.resume(None)
            ex.resuming = False
            if ok:
                await feed.error_event(message, 502, "bad_gateway")
                await feed.end()

        self._spawn(finish())

    async def _resume(
        self,
        feed: ResponseFeed,
        ex: Exchange,
        response: http.Response,
        *,
        answer: httpx.Response | None = None,
        content: bytes = b"",
    ) -> None:
        ok = await feed.resume(response)
        ex.resuming = False
        if not ok:
            if answer is not None:
                await answer.aclose()
            return
        if answer is not None:
            await self._pump(answer, feed, ex)
        else:
            await self._send_body(feed, content)

    async def _rest(
        self, ex: Exchange, last_status: int | None
    ) -> tuple[Outgoing, httpx.Response] | int:
        """Try the plan's attempts after the active one: the first that works (its request and
        response, headers read), else the status for the client (the last answered, or 502)."""
        for index in range(ex.route.current + 1, len(ex.route.attempts)):
            attempt = ex.route.attempts[index]
            if not self._take_key(attempt):
                attempt.failure = "skipped: key cooling or disabled"
                continue
            ex.route.current = index
            out = self.routing.outgoing(ex, attempt, ex.backends, req_is_h2=False)
            answer = await self._send(out, attempt)
            if answer is None:
                continue
            last_status = answer.status_code
            if should_fail_over(answer.status_code):
                data = await _read_limited(answer)
                attempt.failure = failure_text(answer.status_code, answer.reason_phrase)
                account_attempt(self.config, attempt, answer.status_code, answer.headers, data)
                continue
            return out, answer
        ex.route.current = len(ex.route.attempts) - 1
        return last_status or 502

    def _take_key(self, attempt: Attempt) -> bool:
        """Take the attempt's key from its pool (the rotation goes on after it); False when
        it may no longer be used (cooling or disabled since the plan was made)."""
        pool = self.config.pools.get(attempt.backend)
        if pool is None or attempt.key_id is None:
            return True
        if not pool.is_usable(attempt.key_id, attempt.model):
            return False
        pool.used(attempt.key_id)
        return True

    async def _send(self, out: Outgoing, attempt: Attempt) -> httpx.Response | None:
        """Send one attempt; its response once headers arrived, None on a connection failure
        or timeout (recorded on the attempt)."""
        backend = out.backend.name
        origin = out.backend.origin
        connect = self.config.connect_timeout.get(backend)
        reachable, reason = await self.config.reachability.check(origin.host, origin.port, connect)
        if not reachable:
            attempt.failure = f"unreachable: {reason}"
            return None
        idle = self.config.idle_timeout.get(backend)
        first = self.config.first_byte_timeout.get(backend)
        client = self._http()
        request = client.build_request(
            "POST",
            out.url,
            headers=[(k, v) for k, v in out.fields if k.lower() != b"host"],
            content=out.content,
            timeout=httpx.Timeout(connect=connect, read=idle, write=connect, pool=None),
        )
        try:
            return await asyncio.wait_for(client.send(request, stream=True), first)
        except TimeoutError:
            attempt.failure = f"timeout: no response within {first:g} s" if first else "timeout"
        except httpx.ConnectError as e:
            attempt.failure = f"connection error: {_reason(e)}"
            self.config.reachability.mark_down(origin.host, origin.port, attempt.failure)
        except httpx.TimeoutException:
            attempt.failure = "timeout: connecting"
        except httpx.HTTPError as e:
            attempt.failure = f"connection error: {_reason(e)}"
        return None

    def _adopt(
        self,
        flow: http.HTTPFlow,
        ex: Exchange,
        out: Outgoing,
        answer: httpx.Response,
        h2: bool,
    ) -> http.Response:
        """The flow's response for `answer` (its body follows as it arrives); the flow's
        request shows the attempt that answered (key hidden by the responses addon)."""
        fields = [
            (k, v) for k, v in answer.headers.raw if k.decode("latin-1").lower() not in _FRAMING
        ]
        if not h2:
            fields.append((b"transfer-encoding", b"chunked"))
        response = http.Response(
            b"HTTP/1.1",
            answer.status_code,
            answer.reason_phrase.encode("latin-1", "replace"),
            http.Headers(fields),
            None,
            None,
            time.time(),
            None,
        )
        Routing.apply(flow.request, out)
        tried = [a for a in ex.route.attempts[: ex.route.current] if a.failure]
        flow.comment = "failover: " + "; ".join(
            f"{a.backend}:{a.model} ({a.key_id or 'no key'}) {a.failure}" for a in tried
        )
        logger.info(
            "failover to %s:%s (%s) after %s",
            out.backend.name,
            ex.request.model,
            out.key.key_id if out.key else "no key",
            "; ".join(f"{a.backend}:{a.model} {a.failure}" for a in tried),
        )
        return response

    async def _pump(self, answer: httpx.Response, feed: ResponseFeed, ex: Exchange) -> None:
        """Feed the fallback's body to the flow as it arrives, then end it.

        httpx hands over one HTTP chunk at a time, and every LLM API sends each SSE event as
        its own chunk. A reader task gathers what arrived; each wake-up of this loop feeds all
        of it at once, so a burst costs one trip through the flow's stream per network read
        (as `merge_chunks` does for the first attempt's own upstream), not one per event.
        """
        pending: list[bytes] = []
        arrived = asyncio.Event()

        async def read() -> None:
            try:
                async for chunk in answer.aiter_raw():
                    pending.append(chunk)
                    arrived.set()
            finally:
                arrived.set()

        reader = asyncio.create_task(read())
        try:
            while True:
                await arrived.wait()
                arrived.clear()
                if pending:
                    data = b"".join(pending)
                    pending.clear()
                    if not await feed.data(data):
                        return  # the client went away
                if reader.done() and not pending:
                    reader.result()  # the read's own error, if it ended with one
                    return
        except httpx.ReadTimeout:
            ex.error = "the backend stopped sending (llm_idle_timeout)"
            await feed.error_event(ex.error, 504)
        except httpx.HTTPError as e:
            ex.error = f"the backend's stream broke: {_reason(e)}"
            await feed.error_event(ex.error, 502)
        except Exception:
            logger.exception("relaying the fallback's answer failed")
        finally:
            reader.cancel()  # no-op once it ended
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await reader  # its outcome is taken here, also when nobody read it above
            await answer.aclose()
            await feed.end()

    def _all_failed(
        self, flow: http.HTTPFlow, ex: Exchange, status: int
    ) -> tuple[http.Response, bytes]:
        """One error for the client, listing every attempt, and its body."""
        message = describe_failures([a for a in ex.route.attempts if a.failure])
        ex.outcome, ex.status, ex.error = "error", status, message
        logger.warning("%s", message)
        body = dumps(codec(ex.front.protocol).render_error(status, message))
        response = http.Response.make(status, b"", {"content-type": "application/json"})
        response.headers["content-length"] = str(len(body))
        flow.comment = message
        return response, body

    @staticmethod
    async def _send_body(feed: ResponseFeed, body: bytes) -> None:
        await feed.data(body)
        await feed.end()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        spawn(self._tasks, coro)

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(
                http2=False, trust_env=False, follow_redirects=False, timeout=None
            )
        return self._client

    async def done(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._client is not None:
            await self._client.aclose()
            self._client = None


async def _read_limited(answer: httpx.Response) -> bytes:
    data = bytearray()
    try:
        async for chunk in answer.aiter_raw():
            data += chunk
            if len(data) > _ERROR_BODY_LIMIT:
                break
    except httpx.HTTPError:
        pass
    finally:
        await answer.aclose()
    return bytes(data)


def _reason(e: BaseException) -> str:
    text = str(e).strip()
    return text[:200] if text else type(e).__name__

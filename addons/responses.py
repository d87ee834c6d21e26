"""Responses addon: brings each backend answer back to the client in the client's protocol.

The one addon that owns `flow.response.stream`: at `responseheaders` it composes the stream
pipeline (backend decoder, the exchange's stages, client encoder; raw passthrough when the
protocols match and nothing watches to change the stream). Whole answers are converted at
`response`; one in the client's own protocol that no check needs to read goes on as it came,
read into canonical form only when something asks (`protocol.exchange.answer_of`); upstream
errors are relayed in the client's error format with the upstream's status and message,
configured keys scrubbed.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import re
import time
from collections.abc import Callable
from typing import Any

from mitmproxy import http

from addons._http import SSE_HEADERS, body_bytes, dumps, replace_body, spawn
from addons._inject import ResponseFeed, batching_reader, merge_chunks
from addons.config import Config
from addons.failover import account_attempt
from addons.timeouts import Timeouts
from protocol.canonical import ChatResponse
from protocol.codec import Codec, codec, error_message
from protocol.exchange import Exchange, exchange_of
from protocol.failover import failure_text
from protocol.pipeline import StreamPipeline, encode_whole
from protocol.redaction import BytesScrubber, RedactionStage, Redactor
from protocol.wire import loads, string_chars

logger = logging.getLogger(__name__)


def hide_key(flow: http.HTTPFlow, ex: Exchange) -> None:
    """Once the request has gone upstream, the flow keeps the key's name, not the key.

    The proxy's backend key had to be on the wire; it must not stay in the flow that mitmweb
    shows and `mitmdump -w` saves.
    """
    attempt = ex.route.active
    if attempt is None or attempt.key_id is None:
        return  # no key of ours was sent (intercepted traffic keeps the client's own)
    backend = ex.backends.get(attempt.backend)
    if backend is None:
        return
    header, value = backend.auth_header(f"<{attempt.key_id}>")  # the key's name in its place
    name, shown = header.encode(), value.encode()
    headers = flow.request.headers
    fields = headers.fields
    # one pass over the fields (mitmproxy's item access walks them once per lookup)
    for i, (key, _) in enumerate(fields):
        if key.lower() == name:
            headers.fields = (*fields[:i], (key, shown), *fields[i + 1 :])
            return


def _encoder_extras(ex: Exchange) -> dict[str, Any]:
    """A Responses client keeps thinking signatures as `encrypted_content`: the encoder marks
    whose they are, so they can go back to that backend."""
    return {"signature_provider": ex.backend_protocol} if ex.front.protocol == "responses" else {}


def _relayed_unread(ex: Exchange, body: dict[str, Any]) -> bool:
    """Whether a whole answer goes to the client as the backend sent it, unread: same protocol,
    not turned into a stream, and no check would read it (each has less text to look at than
    it needs: a loop needs more text than a short answer holds)."""
    if ex.converted or ex.front.client_stream:
        return False
    checks = ex.answer_checks
    if not checks:
        return True
    need = min(check.min_text for check in checks)
    return need > 0 and string_chars(body, need) < need


def _read_unread(back: Codec, body: dict[str, Any]) -> ChatResponse | None:
    try:
        return back.parse_response(body)
    except Exception:  # relayed as it came; only what reads it later (usage, views) misses it
        logger.warning("the backend's answer could not be read", exc_info=True)
        return None


def _error_body(resp: http.Response, ex: Exchange, status: int, message: str) -> None:
    """The client's protocol's error as the response's body: plain JSON (its encoding header
    goes first, or the setter would encode the new body)."""
    resp.headers.pop("content-encoding", None)
    resp.headers["content-type"] = "application/json"
    replace_body(resp, dumps(codec(ex.front.protocol).render_error(status, message)))


def shown_model(ex: Exchange) -> str | None:
    """The model name answers carry when it is not the backend's: the one the client sent
    (`anthropic:claude-sonnet-4-5`, or a model a session rerouted). Agents compare it with the
    model they asked for (Claude Code drops the thinking of a turn whose model differs). Gemini
    names the model in the URL, not in answers: left alone."""
    if ex.front.protocol == "gemini" or not ex.client_model:
        return None
    return ex.client_model if ex.client_model != ex.request.model else None


@functools.lru_cache(maxsize=256)
def model_renamer(backend_model: str, shown: str) -> Callable[[bytes], bytes]:
    """Rewrites `"model": "<backend model>"` in relayed SSE events to the shown name.

    The compact form every API writes is replaced with `bytes.replace` (a stream relays
    hundreds of events per read); only a text that still names the model after that (other
    spacing, or the name inside some text) is searched with the pattern.
    """
    name = json.dumps(backend_model).encode()
    pattern = re.compile(rb'"model"\s*:\s*' + re.escape(name))
    replacement = b'"model":' + json.dumps(shown).encode()
    compact = b'"model":' + name

    def rename(data: bytes) -> bytes:
        data = data.replace(compact, replacement)
        if name in data:
            data = pattern.sub(lambda _: replacement, data)
        return data

    return rename


def _scrub_stream(pipeline: StreamPipeline, redactor: Redactor) -> None:
    """Configured keys out of a streamed answer, also when one is split over several deltas.

    The stage scrubs the events; a byte-for-byte stream waits while it holds text back and is
    encoded from the events once it replaced something (`StreamPipeline.guard`).
    """
    ex = pipeline.exchange
    stage = RedactionStage(redactor)
    pipeline.stages.append(stage)
    pipeline.guard = stage

    def close(_: StreamPipeline) -> None:
        if stage.count:
            ex.redactions += stage.count
            logger.info("%d configured key(s) scrubbed from a streamed answer", stage.count)

    pipeline.on_close = close


class Responses:
    def __init__(self, config: Config, timeouts: Timeouts | None = None) -> None:
        self.config = config
        self.timeouts = timeouts
        self._tasks: set[asyncio.Task[None]] = set()

    def responseheaders(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        resp = flow.response
        if ex is None or resp is None:
            return
        hide_key(flow, ex)
        if ex.outcome != "pending":
            return
        ex.first_byte = ex.first_byte or time.monotonic()
        if resp.status_code >= 400 or not ex.front.client_stream:
            return
        if "text/event-stream" not in resp.headers.get("content-type", ""):
            return  # the backend answered whole: converted at `response`
        assert ex.backend_protocol is not None
        converted = ex.converted
        shown = shown_model(ex)
        pipeline = StreamPipeline(
            codec(ex.backend_protocol).decoder(),
            codec(ex.front.protocol).encoder(
                model=shown, include_usage=ex.request.include_usage, **_encoder_extras(ex)
            ),
            ex,
            passthrough=not converted and not any(getattr(s, "rewrites", False) for s in ex.stages),
            on_halt=lambda _: self._end_now(flow),
        )
        if shown is not None and pipeline.passthrough:
            pipeline.raw_filter = model_renamer(ex.request.model, shown)
        if ex.answer_scrubber is not None:
            _scrub_stream(pipeline, ex.answer_scrubber)
        if converted:
            resp.headers.pop("content-length", None)
            resp.headers.pop("content-encoding", None)
            resp.headers.update(SSE_HEADERS)
        reader = batching_reader(flow)
        if reader is not None:
            pipeline.on_first_output = reader.expect_flood
        resp.stream = pipeline
        merge_chunks(flow)
        if self.timeouts is not None:
            self.timeouts.watch_stream(flow)

    def _end_now(self, flow: http.HTTPFlow) -> None:
        """A stage halted the answer: end the client's response, close the upstream."""

        async def end() -> None:
            feed = ResponseFeed.attach(flow)
            if feed is None:
                return
            feed.close_upstream()
            await feed.end()

        spawn(self._tasks, end())

    def response(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        resp = flow.response
        if ex is None or resp is None:
            return
        ex.status = resp.status_code
        if flow.server_conn.timestamp_tcp_setup and resp.status_code < 500:
            self.config.reachability.mark_ok(flow.request.host, flow.request.port)
        if flow.server_conn.timestamp_tcp_setup and ex.outcome != "local":
            self._key_outcome(resp, ex)
        if resp.stream or ex.outcome != "pending":
            return
        ex.finished = time.monotonic()
        if resp.status_code >= 400:
            self._relay_error(resp, ex)
            return
        try:
            raw = body_bytes(resp)  # decoded once: mitmproxy decodes on every read
            body = loads(raw)
        except (ValueError, UnicodeDecodeError):
            self._fail(resp, ex, "the backend returned a body that is not JSON")
            return
        if ex.front.endpoint == "count_tokens":
            ex.outcome = "ok"
            return
        assert ex.backend_protocol is not None
        back = codec(ex.backend_protocol)
        answer: ChatResponse | None = None
        rewrite = False  # a check changed the answer: rendered from the canonical form
        if _relayed_unread(ex, body):
            # the backend's own body goes on as it came: read into canonical form when asked
            ex.unread_answer = functools.partial(_read_unread, back, body)
            usage = back.response_usage(body)
        else:
            try:
                answer = back.parse_response(body)
            except Exception:
                logger.exception("could not read the backend's response")
                self._fail(resp, ex, "the backend returned a response that could not be read")
                return
            checked = answer
            for check in ex.answer_checks:
                checked = check.run(checked)
            rewrite = checked is not answer
            answer = ex.answer = checked
            usage = answer.usage
        if usage.input_tokens is not None or usage.output_tokens is not None:
            ex.usage, ex.usage_source = usage, "upstream"
        if ex.outcome == "pending":
            ex.outcome = "ok"
        front = codec(ex.front.protocol)
        shown = shown_model(ex)
        if answer is not None and shown is not None:
            answer.model = shown
        out: bytes | None = None  # the body the client gets instead of the backend's
        if answer is not None and ex.front.client_stream:
            # the client asked to stream and the backend answered whole: send it as a stream
            answer.source = ex.front.protocol if not ex.converted else answer.source
            out = encode_whole(
                answer,
                front.encoder(
                    model=shown, include_usage=ex.request.include_usage, **_encoder_extras(ex)
                ),
            )
            resp.headers.update(SSE_HEADERS)
        elif answer is not None and (ex.converted or rewrite):
            out = dumps(front.render_response(answer))
            resp.headers["content-type"] = "application/json"
        elif shown is not None and body.get("model") == ex.request.model:
            # the backend's own body, renamed in place (not serialized again)
            out = model_renamer(ex.request.model, shown)(raw)
        if ex.answer_scrubber is not None:
            scrubber = BytesScrubber(ex.answer_scrubber)
            scrubbed = scrubber.feed(raw if out is None else out) + scrubber.flush()
            if scrubber.count:
                out = scrubbed
                ex.redactions += scrubber.count
                logger.info("%d configured key(s) scrubbed from an answer", scrubber.count)
        if out is not None:
            replace_body(resp, out)

    def error(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        if ex is None or ex.resuming:
            return
        hide_key(flow, ex)
        ex.finished = time.monotonic()
        if ex.outcome == "pending":
            ex.outcome = "error"
        ex.error = flow.error.msg if flow.error else "connection error"
        if flow.response is None and flow.server_conn.timestamp_tcp_setup is None:
            # the connection itself failed: answer the next requests without trying
            self.config.reachability.mark_down(flow.request.host, flow.request.port, ex.error)

    def _key_outcome(self, resp: http.Response, ex: Exchange) -> None:
        """A 429 cools the key that was used (for that model), a 401/403 disables it."""
        attempt = ex.route.active
        if attempt is None or attempt.failure is not None:
            return  # accounted for by the failover addon
        if resp.status_code >= 400:
            attempt.failure = failure_text(resp.status_code, resp.reason)
        # the body matters only for a 429's retry hint (reading it decodes it: not per request)
        body = (resp.content or b"") if resp.status_code == 429 else b""
        account_attempt(self.config, attempt, resp.status_code, resp.headers, body)

    def _relay_error(self, resp: http.Response, ex: Exchange) -> None:
        ex.outcome = "error"
        text = resp.get_text(strict=False) or ""
        try:
            message = error_message(json.loads(text)) if text else None
        except ValueError:
            message = None
        backend = ex.route.active.backend if ex.route.active else "backend"
        message = self.config.scrub(message or text[:500] or resp.reason or "error")
        ex.error = message
        status = resp.status_code
        # the upstream's own headers (retry-after, request ids) stay on the response
        _error_body(resp, ex, status, f"{backend}: {message}")

    def _fail(self, resp: http.Response, ex: Exchange, message: str) -> None:
        ex.outcome, ex.error, ex.status = "error", message, 502
        resp.status_code = 502
        _error_body(resp, ex, 502, message)

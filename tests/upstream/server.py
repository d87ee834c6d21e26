"""The aiohttp application that stands in for the four backend APIs on one port.

Each API lives under its own prefix (its "API root", what the gateway's `*_API_BASE_URL`
takes):

    openai      /openai/v1            POST chat/completions, POST responses, GET models[/{id}]
    openrouter  /openrouter/api/v1    same protocol as OpenAI (+ OpenRouter's fields)
    anthropic   /anthropic/v1         POST messages, POST messages/count_tokens, GET models[/{id}]
    gemini      /gemini/v1beta        POST models/{m}:generateContent | :streamGenerateContent
                                      | :countTokens, GET models[/{name}]

Every request is recorded (`RequestLog`), authenticated (401 in the API's error shape),
validated strictly (`validate.py`, 400 naming the field), then answered from the scripted
`Reply` queue (`ServerState.next_reply`), rendered by `render.py`. Unknown paths get the
API's 404. This module owns the HTTP side: routing, auth, pacing, splitting and breaking
streams; `script.py` runs it in a thread for tests, `__main__.py` from the command line.
"""

from __future__ import annotations

import asyncio
import json
import math
import re
import threading
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Literal

from aiohttp import web

from tests.upstream import render
from tests.upstream.render_responses import ResponsesRender
from tests.upstream.reply import Reply
from tests.upstream.validate import (
    Rejection,
    check_anthropic,
    check_gemini_count_tokens,
    check_gemini_generate,
    check_openai_chat,
)
from tests.upstream.validate_responses import Stored, check_openai_responses

Backend = Literal["openai", "openrouter", "anthropic", "gemini"]
BACKENDS: tuple[Backend, ...] = ("openai", "openrouter", "anthropic", "gemini")

# The versioned API root of each backend (what the gateway's <NAME>_API_BASE_URL takes) ...
API_ROOTS: dict[Backend, str] = {
    "openai": "/openai/v1",
    "openrouter": "/openrouter/api/v1",
    "anthropic": "/anthropic/v1",
    "gemini": "/gemini/v1beta",
}
# ... and what each official SDK takes as `base_url` (anthropic and google-genai add the
# version themselves: `/v1/messages`, `{api_version}/models/...`).
SDK_ROOTS: dict[Backend, str] = {
    "openai": "/openai/v1",
    "openrouter": "/openrouter/api/v1",
    "anthropic": "/anthropic",
    "gemini": "/gemini",
}
_ROOT_BY_NAME: dict[str, str] = {name: root for name, root in API_ROOTS.items()}
_FIRST_SEGMENT: dict[str, Backend] = {
    "openai": "openai",
    "openrouter": "openrouter",
    "anthropic": "anthropic",
    "gemini": "gemini",
}

DEFAULT_KEYS: dict[Backend, str] = {
    "openai": "test-openai-key",
    "openrouter": "test-openrouter-key",
    "anthropic": "test-anthropic-key",
    "gemini": "test-gemini-key",
}
DEFAULT_MODELS: dict[Backend, list[str]] = {
    "openai": ["gpt-4o", "gpt-4o-mini", "gpt-5", "gpt-5-mini"],
    "openrouter": ["openai/gpt-4o", "anthropic/claude-sonnet-4.5", "google/gemini-2.5-flash"],
    "anthropic": [
        "claude-sonnet-4-5-20250929",
        "claude-haiku-4-5-20251001",
        "claude-opus-4-1-20250805",
    ],
    "gemini": ["gemini-2.5-flash", "gemini-2.5-pro", "gemini-2.0-flash"],
}
_VERSION = re.compile(r"^\d{4}-\d{2}-\d{2}$")  # anthropic-version: a dated version
MAX_BODY = 64 * 1024 * 1024


@dataclass(slots=True)
class RecordedRequest:
    """One request as the upstream saw it, and how it was answered."""

    backend: str  # one of BACKENDS, or "unknown"
    method: str
    path: str  # the full path, prefix included
    query: dict[str, str]
    headers: dict[str, str]  # lower-cased names
    body: Any  # parsed JSON, None when empty or not JSON
    time: float
    raw: bytes = b""
    status: int | None = None  # the status answered (None while in flight)
    error: str | None = None  # the message of an error answer (rejection, auth ...)
    closed_by_client: float | None = None  # when the client closed the connection mid-stream

    @property
    def api_path(self) -> str:
        """The path below the backend's API root (`/chat/completions`, `/models/x:y` ...)."""
        root = _ROOT_BY_NAME.get(self.backend)
        if root and self.path.startswith(root):
            return self.path[len(root) :]
        return self.path

    @property
    def model(self) -> str | None:
        if isinstance(self.body, dict) and isinstance(self.body.get("model"), str):
            return str(self.body["model"])
        if self.backend == "gemini" and "/models/" in self.path:
            return self.path.split("/models/", 1)[1].split(":", 1)[0]
        return None

    @property
    def key(self) -> str | None:
        """The API key the request carried (any of the ways the SDKs send one)."""
        auth = self.headers.get("authorization", "")
        if auth[:7].lower() == "bearer ":
            return auth[7:].strip() or None
        return (
            self.headers.get("x-api-key")
            or self.headers.get("x-goog-api-key")
            or (self.query.get("key"))
        )

    @property
    def stream(self) -> bool:
        if self.backend == "gemini":
            return ":streamGenerateContent" in self.path
        return isinstance(self.body, dict) and self.body.get("stream") is True


class RequestLog:
    """A thread-safe list of `RecordedRequest`s (bounded when `limit` is given)."""

    def __init__(self, limit: int | None = None) -> None:
        self._lock = threading.Lock()
        self._items: deque[RecordedRequest] = deque(maxlen=limit)
        self._changed = threading.Condition(self._lock)

    def append(self, item: RecordedRequest) -> None:
        if self._items.maxlen == 0:
            return
        with self._changed:
            self._items.append(item)
            self._changed.notify_all()

    def snapshot(self, backend: str | None = None) -> list[RecordedRequest]:
        with self._lock:
            return [item for item in self._items if backend is None or item.backend == backend]

    def last(self, backend: str | None = None) -> RecordedRequest | None:
        with self._lock:
            for item in reversed(self._items):
                if backend is None or item.backend == backend:
                    return item
        return None

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def wait_for(self, count: int, timeout: float, backend: str | None = None) -> bool:
        """Block until `count` requests (of `backend`) are recorded; False on timeout."""

        def enough() -> bool:
            return (
                sum(1 for item in self._items if backend is None or item.backend == backend)
                >= count
            )

        with self._changed:
            return self._changed.wait_for(enough, timeout)

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


@dataclass(slots=True)
class Rule:
    """A reply for the requests of one backend, key, model and/or `match` (None matches any)."""

    reply: Reply
    backend: str | None = None
    key: str | None = None
    model: str | None = None
    times: int | None = None  # answered this many times, then dropped; None: for ever
    match: Callable[[RecordedRequest], bool] | None = None  # a test of the request itself

    def matches(self, backend: str, record: RecordedRequest) -> bool:
        return (
            (self.backend is None or self.backend == backend)
            and (self.key is None or self.key == record.key)
            and (self.model is None or self.model == record.model)
            and (self.match is None or self.match(record))
        )


@dataclass
class ServerState:
    """Everything the running app reads: keys, scripted replies, switches, the request log.

    Shared between the server thread and the test; the reply queues and the log are locked.
    `keys[backend] = None` accepts any non-empty key.
    """

    keys: dict[str, str | None] = field(
        default_factory=lambda: {name: key for name, key in DEFAULT_KEYS.items()}
    )
    models: dict[str, list[str]] = field(
        default_factory=lambda: {name: list(ids) for name, ids in DEFAULT_MODELS.items()}
    )
    validate: bool = True
    strict_models: bool = False  # 404 for a model not in `models`
    strict_schema_formats: bool = True  # Gemini: only the documented `format` values
    count_tokens: int | None = None  # fixed count_tokens answer; None estimates
    log: RequestLog = field(default_factory=RequestLog)
    stored: Stored = field(default_factory=Stored)  # Responses API: responses given with store on
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _queues: dict[str | None, deque[Reply]] = field(default_factory=dict, repr=False)
    _defaults: dict[str | None, Reply] = field(default_factory=lambda: {None: Reply()}, repr=False)
    _rules: list[Rule] = field(default_factory=list, repr=False)

    def enqueue(self, reply: Reply, backend: str | None = None) -> None:
        with self._lock:
            self._queues.setdefault(backend, deque()).append(reply)

    def set_default(self, reply: Reply, backend: str | None = None) -> None:
        with self._lock:
            self._defaults[backend] = reply

    def add_rule(self, rule: Rule) -> None:
        with self._lock:
            self._rules.append(rule)

    def next_reply(self, backend: str, record: RecordedRequest | None = None) -> Reply:
        """A matching rule first, then the backend's queue, the shared queue, the defaults."""
        with self._lock:
            if record is not None:
                for rule in self._rules:
                    if rule.matches(backend, record):
                        if rule.times is not None:
                            rule.times -= 1
                            if rule.times <= 0:
                                self._rules.remove(rule)
                        return rule.reply
            for key in (backend, None):
                queue = self._queues.get(key)
                if queue:
                    return queue.popleft()
            return self._defaults.get(backend) or self._defaults[None]

    def pending(self, backend: str | None = None) -> int:
        with self._lock:
            if backend is None:
                return sum(len(queue) for queue in self._queues.values())
            return len(self._queues.get(backend, ()))

    def reset_replies(self) -> None:
        with self._lock:
            self._rules.clear()
            self._queues.clear()
            self._defaults = {None: Reply()}


# --------------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------------


def _json_response(
    body: object, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    return web.Response(
        body=render.dumps(body),
        status=status,
        content_type="application/json",
        headers=headers,
    )


def _mask(key: str) -> str:
    return f"{key[:3]}{'*' * max(4, len(key) - 7)}{key[-4:]}" if len(key) > 8 else "****"


def _estimate_tokens(*values: object) -> int:
    """A deterministic stand-in for a tokenizer: characters of every string / 4, rounded up."""
    total = 0
    stack: list[object] = list(values)
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            total += len(value)
        elif isinstance(value, dict):
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return max(1, math.ceil(total / 4))


def _split_path(path: str) -> tuple[str, str | None]:
    """(backend, path below its API root); the path part is None outside the API root."""
    first = path.lstrip("/").split("/", 1)[0]
    backend = _FIRST_SEGMENT.get(first)
    if backend is None:
        return "unknown", None
    root = API_ROOTS[backend]
    if path == root or path.startswith(root + "/"):
        return backend, path[len(root) :]
    return backend, None


SendBody = Callable[[], object]
SendEvents = Callable[[], list[bytes]]


class UpstreamApp:
    """The request handlers, bound to one `ServerState`."""

    def __init__(self, state: ServerState) -> None:
        self.state = state

    # ---------------------------------------------------------------- entry

    async def handle(self, request: web.Request) -> web.StreamResponse:
        backend, sub = _split_path(request.path)
        raw = await request.read()
        body: Any = None
        parse_error = False
        if raw:
            try:
                body = json.loads(raw)
            except ValueError:
                parse_error = True
        record = RecordedRequest(
            backend=backend,
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={name.lower(): value for name, value in request.headers.items()},
            body=body,
            time=time.time(),
            raw=raw,
        )
        self.state.log.append(record)
        try:
            response = await self._dispatch(request, record, backend, sub, body, parse_error)
        except BaseException:
            record.status = record.status or 499  # the client hung up (nginx's number)
            raise
        record.status = response.status
        return response

    async def _dispatch(
        self,
        request: web.Request,
        record: RecordedRequest,
        backend: str,
        sub: str | None,
        body: Any,
        parse_error: bool,
    ) -> web.StreamResponse:
        if backend == "unknown":
            return self._error(
                record,
                "openai",
                404,
                f"Unknown upstream path {request.path}: use one of "
                + ", ".join(API_ROOTS.values()),
            )
        unauthorized = self._authenticate(request, record, backend)
        if unauthorized is not None:
            return unauthorized
        if backend == "anthropic":
            version = request.headers.get("anthropic-version")
            if not version:
                return self._error(record, backend, 400, "anthropic-version: header is required")
            if not _VERSION.match(version):
                return self._error(
                    record, backend, 400, f"anthropic-version: invalid version '{version}'"
                )
        if sub is None:
            return self._not_found(request, record, backend)
        if parse_error:
            return self._error(record, backend, 400, _PARSE_ERRORS[backend])
        method = request.method
        if backend in ("openai", "openrouter"):
            if method == "POST" and sub == "/chat/completions":
                return await self._openai_chat(request, record, backend, body)
            if method == "POST" and sub == "/responses" and backend == "openai":
                return await self._openai_responses(request, record, body)
            if method == "GET" and sub == "/models":
                return _json_response(render.openai_models(self._models(backend), backend))  # type: ignore[arg-type]
            if method == "GET" and sub.startswith("/models/"):
                return self._openai_model(record, backend, sub[len("/models/") :])
        elif backend == "anthropic":
            if method == "POST" and sub == "/messages":
                return await self._anthropic_messages(request, record, body)
            if method == "POST" and sub == "/messages/count_tokens":
                return self._anthropic_count(request, record, body)
            if method == "GET" and sub == "/models":
                return _json_response(render.anthropic_models(self._models("anthropic")))
            if method == "GET" and sub.startswith("/models/"):
                model_id = sub[len("/models/") :]
                if model_id not in self._models("anthropic"):
                    return self._error(record, backend, 404, f"model: {model_id}")
                return _json_response(render.anthropic_model(model_id))
        elif sub.startswith("/models"):
            return await self._gemini(request, record, sub, body)
        return self._not_found(request, record, backend)

    # ---------------------------------------------------------------- auth and errors

    def _authenticate(
        self, request: web.Request, record: RecordedRequest, backend: str
    ) -> web.Response | None:
        headers = request.headers
        given: str | None
        if backend in ("openai", "openrouter"):
            header = headers.get("Authorization", "")
            given = header[7:].strip() if header[:7].lower() == "bearer " else None
        elif backend == "anthropic":
            # x-api-key, or (as anthropic SDK 2.x sends API keys) Authorization: Bearer
            header = headers.get("Authorization", "")
            bearer = header[7:].strip() if header[:7].lower() == "bearer " else None
            given = headers.get("x-api-key") or bearer
        else:
            given = headers.get("x-goog-api-key") or request.query.get("key")
        expected = self.state.keys.get(backend)
        if given and (expected is None or given == expected):
            return None
        messages = _AUTH_MISSING if not given else _AUTH_WRONG
        message = messages[backend].format(key=_mask(given or ""))
        code = "invalid_api_key" if given else None
        return self._error(record, backend, 401, message, code=code)

    def _error(
        self,
        record: RecordedRequest,
        backend: str,
        status: int,
        message: str,
        param: str | None = None,
        code: str | None = None,
        headers: dict[str, str] | None = None,
        error_type: str | None = None,
        details: list[Any] | None = None,
    ) -> web.Response:
        record.error = message
        body = render.error_body(backend, status, message, error_type, param, code, details)
        return _json_response(body, status, headers)

    def _rejected(
        self, record: RecordedRequest, backend: str, rejection: Rejection
    ) -> web.Response:
        return self._error(record, backend, rejection.status, rejection.message, rejection.param)

    def _not_found(
        self, request: web.Request, record: RecordedRequest, backend: str
    ) -> web.Response:
        if backend in ("openai", "openrouter"):
            message = f"Invalid URL ({request.method} {request.path})"
        elif backend == "anthropic":
            message = f"Not Found: {request.method} {request.path}"
        else:
            message = f"The requested URL {request.path} was not found on this server."
        return self._error(record, backend, 404, message)

    def _models(self, backend: str) -> list[str]:
        return self.state.models.get(backend, [])

    def _unknown_model(self, backend: str, model: str) -> bool:
        return self.state.strict_models and model not in self._models(backend)

    # ---------------------------------------------------------------- sending replies

    async def _send(
        self,
        request: web.Request,
        record: RecordedRequest,
        backend: str,
        reply: Reply,
        stream: bool,
        json_body: SendBody,
        events: SendEvents,
        error_event: Callable[[str], bytes],
        content_type: str = "text/event-stream; charset=utf-8",
        request_id_header: str = "x-request-id",
    ) -> web.StreamResponse:
        if reply.delay_before_headers:
            await asyncio.sleep(reply.delay_before_headers)
        if reply.reset:
            record.error = "connection reset before the answer (reset)"
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=499)
        headers = {request_id_header: f"req_{render.random_id()}", **reply.headers}
        if reply.is_error:
            message = (
                reply.error_message or render.error_body(backend, reply.status)["error"]["message"]
            )
            return self._error(
                record,
                backend,
                reply.status,
                message,
                headers=headers,
                error_type=reply.error_type,
                details=reply.error_details,
            )
        if not stream:
            return _json_response(json_body(), headers=headers)
        chunks = events()
        broken = reply.close_midstream or reply.midstream_error is not None
        if broken:
            record.error = (
                "connection dropped mid-stream (close_midstream)"
                if reply.close_midstream
                else f"mid-stream error event: {reply.midstream_error}"
            )
            chunks = chunks[: max(1, len(chunks) // 2)]
            if reply.midstream_error is not None and not reply.close_midstream:
                chunks.append(error_event(reply.midstream_error))
        response = web.StreamResponse(
            status=200,
            headers={"Content-Type": content_type, "Cache-Control": "no-cache", **headers},
        )
        try:
            await response.prepare(request)
        except ConnectionResetError:
            record.error = "the client went away before the answer"
            return response
        pieces: list[bytes] = chunks
        if reply.split_bytes:
            data = b"".join(chunks)
            step = max(1, reply.split_bytes)
            pieces = [data[start : start + step] for start in range(0, len(data), step)]
        try:
            for position, piece in enumerate(pieces):
                if position and reply.chunk_delay:
                    await asyncio.sleep(reply.chunk_delay)
                await response.write(piece)
                if reply.split_bytes and not reply.chunk_delay:
                    await asyncio.sleep(0)  # each piece is its own send(); let it leave
            if reply.close_midstream:
                if request.transport is not None:
                    request.transport.abort()  # drop the connection, no final chunk
                return response
            await response.write_eof()
        except ConnectionResetError:
            # the client went away first (it may, once it has seen an error event, or when the
            # proxy stops a looping answer)
            record.closed_by_client = time.time()
        return response

    # ---------------------------------------------------------------- OpenAI / OpenRouter

    async def _openai_chat(
        self, request: web.Request, record: RecordedRequest, backend: str, body: Any
    ) -> web.StreamResponse:
        flavor: render.Flavor = "openrouter" if backend == "openrouter" else "openai"
        if self.state.validate:
            rejection = check_openai_chat(body, flavor)
            if rejection is not None:
                return self._rejected(record, backend, rejection)
        if not isinstance(body, dict):
            return self._error(record, backend, 400, "The request body must be a JSON object.")
        model = str(body.get("model"))
        if self._unknown_model(backend, model):
            if backend == "openrouter":
                return self._error(record, backend, 400, f"{model} is not a valid model ID")
            return self._error(
                record,
                backend,
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        reply = self.state.next_reply(backend, record)
        answer_model = reply.model or model
        stream = body.get("stream") is True
        options = body.get("stream_options") or {}
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        obfuscation = not (
            isinstance(options, dict) and options.get("include_obfuscation") is False
        )
        return await self._send(
            request,
            record,
            backend,
            reply,
            stream,
            lambda: render.openai_completion(reply, answer_model, flavor),
            lambda: render.openai_stream(reply, answer_model, flavor, include_usage, obfuscation),
            lambda message: render.openai_stream_error(message, flavor, answer_model),
        )

    async def _openai_responses(
        self, request: web.Request, record: RecordedRequest, body: Any
    ) -> web.StreamResponse:
        stored = self.state.stored
        if self.state.validate:
            rejection = check_openai_responses(body, stored)
            if rejection is not None:
                return self._rejected(record, "openai", rejection)
        if not isinstance(body, dict):
            return self._error(record, "openai", 400, "The request body must be a JSON object.")
        model = str(body.get("model"))
        if self._unknown_model("openai", model):
            return self._error(
                record,
                "openai",
                404,
                f"The model `{model}` does not exist or you do not have access to it.",
                code="model_not_found",
            )
        reply = self.state.next_reply("openai", record)
        answer = ResponsesRender(reply, reply.model or model, body)

        def events() -> list[bytes]:
            chunks = answer.events()
            answer.kept_events = max(1, len(chunks) // 2)  # what `_send` keeps of a broken stream
            return chunks

        response = await self._send(
            request,
            record,
            "openai",
            reply,
            body.get("stream") is True,
            answer.response,
            events,
            lambda message: answer.error_event(message, reply.responses_error_event),
        )
        if response.status == 200 and record.error is None and body.get("store") is not False:
            output = answer.output()
            stored.add(
                answer.id,
                {item["call_id"] for item in output if item["type"] == "function_call"},
                {item["id"] for item in output},
            )
        return response

    def _openai_model(self, record: RecordedRequest, backend: str, model_id: str) -> web.Response:
        if model_id not in self._models(backend):
            return self._error(
                record,
                backend,
                404,
                f"The model '{model_id}' does not exist",
                param="model",
                code="model_not_found",
            )
        flavor: render.Flavor = "openrouter" if backend == "openrouter" else "openai"
        return _json_response(render.openai_model(model_id, flavor))

    # ---------------------------------------------------------------- Anthropic

    async def _anthropic_messages(
        self, request: web.Request, record: RecordedRequest, body: Any
    ) -> web.StreamResponse:
        if self.state.validate:
            rejection = check_anthropic(body, request.headers.get("anthropic-beta"), "messages")
            if rejection is not None:
                return self._rejected(record, "anthropic", rejection)
        if not isinstance(body, dict):
            return self._error(record, "anthropic", 400, "Input should be a valid dictionary")
        model = str(body.get("model"))
        if self._unknown_model("anthropic", model):
            return self._error(record, "anthropic", 404, f"model: {model}")
        reply = self.state.next_reply("anthropic", record)
        answer_model = reply.model or model
        return await self._send(
            request,
            record,
            "anthropic",
            reply,
            body.get("stream") is True,
            lambda: render.anthropic_message(reply, answer_model),
            lambda: render.anthropic_stream(reply, answer_model),
            lambda message: render.anthropic_stream_error(message, reply.error_type),
            request_id_header="request-id",
        )

    def _anthropic_count(
        self, request: web.Request, record: RecordedRequest, body: Any
    ) -> web.Response:
        if self.state.validate:
            rejection = check_anthropic(body, request.headers.get("anthropic-beta"), "count_tokens")
            if rejection is not None:
                return self._rejected(record, "anthropic", rejection)
        if not isinstance(body, dict):
            return self._error(record, "anthropic", 400, "Input should be a valid dictionary")
        count = self.state.count_tokens
        if count is None:
            count = _estimate_tokens(body.get("system"), body.get("messages"), body.get("tools"))
        return _json_response({"input_tokens": count})

    # ---------------------------------------------------------------- Gemini

    async def _gemini(
        self, request: web.Request, record: RecordedRequest, sub: str, body: Any
    ) -> web.StreamResponse:
        method = request.method
        if sub == "/models":
            if method == "GET":
                return _json_response(render.gemini_models(self._models("gemini")))
            return self._not_found(request, record, "gemini")
        name = sub[len("/models/") :]
        if ":" not in name:
            if method == "GET" and name in self._models("gemini"):
                return _json_response(render.gemini_model(name))
            if method == "GET":
                return self._error(
                    record, "gemini", 404, f"models/{name} is not found for API version v1beta."
                )
            return self._not_found(request, record, "gemini")
        model, action = name.rsplit(":", 1)
        if method != "POST" or action not in (
            "generateContent",
            "streamGenerateContent",
            "countTokens",
        ):
            return self._not_found(request, record, "gemini")
        if self._unknown_model("gemini", model):
            return self._error(
                record,
                "gemini",
                404,
                f"models/{model} is not found for API version v1beta, or is not supported for "
                f"{action}. Call ListModels to see the list of available models and their "
                "supported methods.",
            )
        if action == "countTokens":
            if self.state.validate:
                rejection = check_gemini_count_tokens(body, self.state.strict_schema_formats)
                if rejection is not None:
                    return self._rejected(record, "gemini", rejection)
            count = self.state.count_tokens
            if count is None:
                count = _estimate_tokens(body)
            return _json_response(
                {
                    "totalTokens": count,
                    "promptTokensDetails": [{"modality": "TEXT", "tokenCount": count}],
                }
            )
        if self.state.validate:
            rejection = check_gemini_generate(body, self.state.strict_schema_formats)
            if rejection is not None:
                return self._rejected(record, "gemini", rejection)
        if not isinstance(body, dict):
            return self._error(record, "gemini", 400, "Invalid JSON payload received.")
        reply = self.state.next_reply("gemini", record)
        answer_model = reply.model or model
        stream = action == "streamGenerateContent"
        if request.query.get("alt") == "sse" or not stream:
            return await self._send(
                request,
                record,
                "gemini",
                reply,
                stream,
                lambda: render.gemini_response(reply, answer_model),
                lambda: [
                    render.gemini_sse(obj)
                    for obj in render.gemini_stream_objects(reply, answer_model)
                ],
                lambda message: render.gemini_sse(render.gemini_stream_error(message)),
                content_type="text/event-stream",
                request_id_header="x-goog-request-id",
            )

        def array_events() -> list[bytes]:
            objects = render.gemini_stream_objects(reply, answer_model)
            pieces = [
                (b"[" if index == 0 else b",\r\n") + render.dumps(obj)
                for index, obj in enumerate(objects)
            ]
            pieces.append(b"]")
            return pieces

        return await self._send(
            request,
            record,
            "gemini",
            reply,
            True,
            lambda: render.gemini_response(reply, answer_model),
            array_events,
            lambda message: b",\r\n" + render.dumps(render.gemini_stream_error(message)) + b"]",
            content_type="application/json; charset=UTF-8",
            request_id_header="x-goog-request-id",
        )


_PARSE_ERRORS: dict[str, str] = {
    "openai": (
        "We could not parse the JSON body of your request. (HINT: This likely means you aren't "
        "using your HTTP library correctly. The OpenAI API expects a JSON payload, but what was "
        "sent was not valid JSON.)"
    ),
    "openrouter": "Invalid JSON in request body",
    "anthropic": (
        "There was an error parsing the body of your request. Please check that your request "
        "body is valid JSON."
    ),
    "gemini": "Invalid JSON payload received. Unexpected token.",
}
_AUTH_MISSING: dict[str, str] = {
    "openai": (
        "You didn't provide an API key. You need to provide your API key in an Authorization "
        "header using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
    ),
    "openrouter": "No auth credentials found",
    "anthropic": "x-api-key header is required",
    "gemini": (
        "Method doesn't allow unregistered callers (callers without established identity). "
        "Please use API Key or other form of API consumer identity to call this API."
    ),
}
_AUTH_WRONG: dict[str, str] = {
    "openai": (
        "Incorrect API key provided: {key}. You can find your API key at "
        "https://platform.openai.com/account/api-keys."
    ),
    "openrouter": "User not found.",
    "anthropic": "invalid x-api-key",
    "gemini": "API key not valid. Please pass a valid API key.",
}


def build_app(state: ServerState) -> web.Application:
    """The aiohttp application serving `state` (one catch-all route; routing is ours)."""
    app = web.Application(client_max_size=MAX_BODY)
    handlers = UpstreamApp(state)
    handler: Callable[[web.Request], Awaitable[web.StreamResponse]] = handlers.handle
    app.router.add_route("*", "/{tail:.*}", handler)
    return app

"""`Upstream`: the test upstream as an in-process object a test starts, scripts and inspects.

The aiohttp app runs in a background thread with its own event loop, bound to 127.0.0.1 on
a free port, so sync tests and pytest-asyncio tests use it alike:

    with Upstream() as upstream:
        upstream.enqueue(Reply(text="hi", tool_calls=[ToolCall("get_weather", {"city": "Oslo"})]))
        client = OpenAI(base_url=upstream.sdk_base_url("openai"), api_key=upstream.keys["openai"])
        ...
        assert upstream.last("openai").body["model"] == "gpt-4o"

`base_url(backend)` is the versioned API root (`.../anthropic/v1`), what the gateway's
`<NAME>_API_BASE_URL` takes; `sdk_base_url(backend)` is what that backend's official SDK takes
as `base_url` (`.../anthropic`, `.../gemini`); `env()` gives the gateway's variables.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import threading
from collections.abc import Callable
from types import TracebackType

from aiohttp import web

from tests.upstream.reply import DEFAULT_TEXT, Reply, ToolCall, Usage
from tests.upstream.server import (
    API_ROOTS,
    BACKENDS,
    SDK_ROOTS,
    Backend,
    RecordedRequest,
    Rule,
    ServerState,
    build_app,
)

__all__ = ["DEFAULT_TEXT", "RecordedRequest", "Reply", "ToolCall", "Upstream", "Usage"]

_ENV_PREFIX: dict[Backend, str] = {
    "openai": "OPENAI",
    "openrouter": "OPENROUTER",
    "anthropic": "ANTHROPIC",
    "gemini": "GEMINI",
}


class Upstream:
    """The fake backends on one local port; see the module docstring."""

    def __init__(
        self,
        *,
        keys: dict[str, str | None] | None = None,
        models: dict[str, list[str]] | None = None,
        validate: bool = True,
        strict_models: bool = False,
        strict_schema_formats: bool = True,
        host: str = "127.0.0.1",
        port: int = 0,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self.state = ServerState(
            validate=validate,
            strict_models=strict_models,
            strict_schema_formats=strict_schema_formats,
        )
        if keys is not None:
            self.state.keys.update(keys)
        if models is not None:
            self.state.models.update(models)
        self.host = host
        self._requested_port = port
        self.ssl_context = ssl_context  # serve HTTPS (the certificate's name must fit `host`)
        self.port: int | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # ---------------------------------------------------------------- lifecycle

    def start(self) -> Upstream:
        if self._thread is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((self.host, self._requested_port))
        sock.listen(256)
        sock.setblocking(False)
        self.port = sock.getsockname()[1]
        loop = asyncio.new_event_loop()
        ready = threading.Event()
        failure: list[BaseException] = []

        def run() -> None:
            asyncio.set_event_loop(loop)
            runner = web.AppRunner(build_app(self.state), access_log=None, shutdown_timeout=0.5)
            try:
                loop.run_until_complete(runner.setup())
                site = web.SockSite(runner, sock, ssl_context=self.ssl_context)
                loop.run_until_complete(site.start())
            except BaseException as error:  # surfaced by start()
                failure.append(error)
                ready.set()
                loop.close()
                return
            ready.set()
            try:
                loop.run_forever()
            finally:
                loop.run_until_complete(runner.cleanup())
                loop.close()

        self._loop = loop
        self._thread = threading.Thread(target=run, name=f"test-upstream:{self.port}", daemon=True)
        self._thread.start()
        if not ready.wait(15):
            raise RuntimeError("the test upstream did not start within 15 s")
        if failure:
            self._thread = None
            raise failure[0]
        return self

    def stop(self) -> None:
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=10)
        self._thread = None
        self._loop = None

    def __enter__(self) -> Upstream:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    # ---------------------------------------------------------------- addresses

    @property
    def url(self) -> str:
        if self.port is None:
            raise RuntimeError("the upstream is not started")
        scheme = "https" if self.ssl_context is not None else "http"
        return f"{scheme}://{self.host}:{self.port}"

    def base_url(self, backend: Backend) -> str:
        """The backend's versioned API root, as the gateway's `<NAME>_API_BASE_URL` takes it.

        openai `/openai/v1`, openrouter `/openrouter/api/v1`, anthropic `/anthropic/v1`,
        gemini `/gemini/v1beta` (the real defaults end the same way: `api.openai.com/v1`,
        `openrouter.ai/api/v1`, `api.anthropic.com/v1`, `generativelanguage.../v1beta`).
        """
        return self.url + API_ROOTS[backend]

    def sdk_base_url(self, backend: Backend) -> str:
        """What `backend`'s official SDK takes as `base_url`.

        The same as `base_url` for openai/openrouter; anthropic `/anthropic` (the SDK appends
        `/v1/messages`); gemini `/gemini` (google-genai appends `{api_version}/models/...`,
        give it `api_version="v1beta"`).
        """
        return self.url + SDK_ROOTS[backend]

    def env(self, backends: tuple[Backend, ...] = BACKENDS) -> dict[str, str]:
        """The gateway's environment for `backends`: `<NAME>_API_BASE_URL` and `<NAME>_API_KEY`."""
        variables: dict[str, str] = {}
        for backend in backends:
            prefix = _ENV_PREFIX[backend]
            variables[f"{prefix}_API_BASE_URL"] = self.base_url(backend)
            variables[f"{prefix}_API_KEY"] = self.state.keys.get(backend) or f"any-{backend}-key"
        return variables

    # ---------------------------------------------------------------- keys

    @property
    def keys(self) -> dict[str, str | None]:
        """The accepted key per backend (mutable; `None` accepts any non-empty key)."""
        return self.state.keys

    @keys.setter
    def keys(self, value: dict[str, str | None]) -> None:
        self.state.keys.clear()
        self.state.keys.update(value)

    # ---------------------------------------------------------------- scripting

    def enqueue(self, *replies: Reply, backend: Backend | None = None) -> None:
        """Queue replies, consumed in order by `backend` (or by any backend when None).

        A backend takes from its own queue first, then from the shared one, then the default.
        Requests refused before answering (auth, validation) consume nothing.
        """
        for reply in replies:
            self.state.enqueue(reply, backend)

    def when(
        self,
        reply: Reply,
        *,
        backend: Backend | None = None,
        key: str | None = None,
        model: str | None = None,
        times: int | None = None,
        match: Callable[[RecordedRequest], bool] | None = None,
    ) -> None:
        """Answer the requests of this backend / key / model with `reply` (before any queue).

        Each criterion left None matches anything; `match` tests the request itself (e.g.
        `lambda r: not conversation.tool_results(r)`: only before the tool ran). `times`
        answers that many, then the rule is dropped. `reset()` drops every rule. Rules are
        tried in the order they were added.
        """
        self.state.add_rule(Rule(reply, backend, key, model, times, match))

    def set_default(self, reply: Reply, backend: Backend | None = None) -> None:
        """The reply used when the queues are empty (per backend, or for all)."""
        self.state.set_default(reply, backend)

    def pending(self, backend: Backend | None = None) -> int:
        """Replies still queued (all queues, or `backend`'s own queue)."""
        return self.state.pending(backend)

    def reset(self) -> None:
        """Drop queued replies, restore the default reply, forget recorded requests."""
        self.state.reset_replies()
        self.clear()

    # ---------------------------------------------------------------- inspection

    @property
    def requests(self) -> list[RecordedRequest]:
        """A snapshot of every recorded request, oldest first."""
        return self.state.log.snapshot()

    def requests_for(self, backend: Backend) -> list[RecordedRequest]:
        return self.state.log.snapshot(backend)

    def last(self, backend: Backend | None = None) -> RecordedRequest:
        """The latest request (to `backend`); AssertionError when there is none."""
        found = self.state.log.last(backend)
        if found is None:
            raise AssertionError(
                f"no request reached the upstream{f' for {backend}' if backend else ''}"
            )
        return found

    def clear(self) -> None:
        self.state.log.clear()

    def wait_for_requests(
        self, count: int, timeout: float = 5.0, backend: Backend | None = None
    ) -> list[RecordedRequest]:
        """Block until `count` requests (to `backend`) are recorded; AssertionError on timeout."""
        if not self.state.log.wait_for(count, timeout, backend):
            raise AssertionError(
                f"expected {count} request(s) within {timeout} s, got "
                f"{len(self.state.log.snapshot(backend))}"
            )
        return self.state.log.snapshot(backend)

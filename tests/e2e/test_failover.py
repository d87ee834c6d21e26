"""Failover through the real proxy: a failed attempt is resent at once with the plan's next
attempt and the client sees only the one that worked, in its own protocol, streamed live.

The proxy has two keys per backend (the test upstream takes any key and records which came);
failures are scripted on the upstream per request, per key or per model.
"""

from __future__ import annotations

import email.utils
import json
import re
import sqlite3
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY, call, running_proxy
from tests.e2e.proxy import ProxyProcess
from tests.e2e.test_errors import FRONTS, sdk_error, status_and_message
from tests.e2e.test_streams import raw_stream, streamed_text
from tests.upstream.script import Reply, Upstream

KEYS = {
    "openai": ("oa-key-one", "oa-key-two"),
    "anthropic": ("an-key-one", "an-key-two"),
    "gemini": ("ge-key-one", "ge-key-two"),
}
FRONT_BACKEND_MODEL = {
    "openai": "openai:gpt-4o",
    "anthropic": "anthropic:claude-sonnet-4-5",
    "gemini": "gemini:gemini-2.5-pro",
}


ROUTES = {
    "r-k": "k:openai:gpt-4o-k,anthropic:claude-k",
    "r-m": "m:openai:gpt-4o-m,anthropic:claude-m,gemini:gemini-2.5-m",
    "r-km": "km:openai:gpt-4o-km,anthropic:claude-km",
    "r-mk": "mk:openai:gpt-4o-mk,anthropic:claude-mk",
}


@pytest.fixture(scope="module")
def pooled(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    env: dict[str, str] = {}
    for backend, (one, two) in KEYS.items():
        env[f"{backend.upper()}_API_KEY_1"] = one
        env[f"{backend.upper()}_API_KEY_2"] = two
    saved = dict(upstream.keys)
    for backend in KEYS:
        upstream.keys[backend] = None  # any key
    try:
        with running_proxy(
            upstream,
            tmp_path_factory.mktemp("conf-failover"),
            env=env,
            drop=tuple(f"{b.upper()}_API_KEY" for b in KEYS),
            extra=[
                "llm_first_byte_timeout=2",
                "llm_idle_timeout=2",
                *(f"llm_routes={name}={spec}" for name, spec in ROUTES.items()),
            ],
        ) as process:
            yield process
    finally:
        upstream.keys.clear()
        upstream.keys.update(saved)


@pytest.fixture(autouse=True)
def fresh(upstream: Upstream) -> Iterator[None]:
    upstream.reset()
    yield
    upstream.reset()


def chat_keys(upstream: Upstream) -> list[str | None]:
    return [r.key for r in upstream.requests if r.method == "POST" and r.model]


@pytest.mark.parametrize("status", [429, 500, 502, 503, 504, 529, 408, 409])  # 401: test_keys
@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("backend", ["openai", "anthropic", "gemini"])
def test_a_failed_attempt_is_resent_with_the_next_key(
    backend: str, stream: bool, status: int, pooled: ProxyProcess, upstream: Upstream
) -> None:
    # a model of its own per case: a 429 cools its key for that model only
    model = f"{FRONT_BACKEND_MODEL[backend]}-{status}-{int(stream)}"
    upstream.enqueue(Reply(status=status, error_message=f"failing with {status}"))
    upstream.set_default(Reply(text="the fallback answered"))
    got = call(backend, pooled, model, stream=stream)
    assert got.text == "the fallback answered"
    sent = chat_keys(upstream)
    assert len(sent) == 2 and set(sent) == set(KEYS[backend])


@pytest.mark.parametrize("front", FRONTS)
def test_failover_across_protocols_answers_in_the_clients_protocol(
    front: str, pooled: ProxyProcess, upstream: Upstream
) -> None:
    """The client's protocol differs from the backend's; both attempts are converted."""
    backend = "anthropic" if front != "anthropic" else "gemini"
    model = f"{FRONT_BACKEND_MODEL[backend]}-cross-{front}"
    upstream.set_default(Reply(text="converted fallback"))
    for stream in (False, True):
        upstream.enqueue(Reply(status=529, error_message="overloaded"))
        assert call(front, pooled, model, stream=stream).text == "converted fallback"


def test_a_client_error_is_returned_as_it_is(pooled: ProxyProcess, upstream: Upstream) -> None:
    upstream.enqueue(Reply(status=400, error_message="messages: bad shape"))
    upstream.set_default(Reply(text="never"))
    status, message = status_and_message(sdk_error("openai", pooled, "openai:gpt-4o-400"))
    assert status == 400 and "bad shape" in message
    assert len(chat_keys(upstream)) == 1


def test_the_fallback_streams_live(pooled: ProxyProcess, upstream: Upstream) -> None:
    upstream.enqueue(Reply(status=503, error_message="down"))
    upstream.set_default(Reply(text="one two three four five six", text_chunks=6, chunk_delay=0.4))
    client = clients.openai_client(pooled.url, PROXY_KEY)
    started = time.monotonic()
    arrivals: list[float] = []
    text = ""
    for chunk in client.chat.completions.create(
        model="openai:gpt-4o-live",
        messages=[{"role": "user", "content": "count"}],
        stream=True,
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
            text += chunk.choices[0].delta.content
    assert text == "one two three four five six"
    assert len(arrivals) == 6
    # the first words arrive while the fallback is still producing the rest (~2 s in all)
    assert arrivals[0] < arrivals[-1] - 1.5


def test_a_fallback_burst_is_relayed_a_read_at_a_time(
    pooled: ProxyProcess, upstream: Upstream
) -> None:
    """The fallback (sent with httpx) writes 400 events back to back, each its own HTTP chunk:
    they reach the client in far fewer writes than events, every word intact."""
    upstream.enqueue(Reply(status=503, error_message="down"))
    words = [f"w{i} " for i in range(400)]
    upstream.set_default(Reply(text="".join(words), text_chunks=400))
    chunks, body = raw_stream(pooled, "openai:gpt-4o-burst")
    assert streamed_text(body) == "".join(words)
    assert chunks < 100, f"{chunks} writes for 400 events"
    assert len(chat_keys(upstream)) == 2  # the fallback answered


def test_a_silent_attempt_times_out_and_fails_over(pooled: ProxyProcess, upstream: Upstream) -> None:
    upstream.enqueue(Reply(text="too late", delay_before_headers=6))
    upstream.set_default(Reply(text="in time"))
    started = time.monotonic()
    got = call("anthropic", pooled, "anthropic:claude-sonnet-4-5-hang", stream=True)
    assert got.text == "in time"
    assert time.monotonic() - started < 5  # llm_first_byte_timeout=2, then the next key
    assert set(chat_keys(upstream)) == set(KEYS["anthropic"])


def test_every_attempt_failing_gives_one_error_listing_them(
    pooled: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(
        Reply(status=500, error_message="boom"), Reply(status=529, error_message="busy")
    )
    with pytest.raises(openai.APIStatusError) as caught:
        call("openai", pooled, "openai:gpt-4o-allfail", stream=True)
    assert caught.value.status_code == 529  # the last attempt's status
    message = str(caught.value)
    assert "all 2 attempts failed" in message
    listed = re.findall(r"openai:gpt-4o-allfail \((OPENAI_API_KEY_\d)\): (\d{3}[^;]*)", message)
    assert [status for _, status in listed] == ["500 Internal Server Error", "529 overloaded"]
    assert {key for key, _ in listed} == {"OPENAI_API_KEY_1", "OPENAI_API_KEY_2"}
    for key in KEYS["openai"]:
        assert key not in message and key not in pooled.log()


def test_the_usage_row_lists_the_attempts(pooled: ProxyProcess, upstream: Upstream) -> None:
    model = "gemini:gemini-2.5-pro-usage"
    upstream.enqueue(Reply(status=500, error_message="boom"))
    upstream.set_default(Reply(text="ok"))
    call("gemini", pooled, model, stream=False)
    deadline = time.monotonic() + 5
    row: Any = None
    while time.monotonic() < deadline:
        with sqlite3.connect(pooled.usage_db) as db:
            row = db.execute(
                "SELECT attempts, key_id, outcome FROM usage WHERE model_requested = ?", (model,)
            ).fetchone()
        if row:
            break
        time.sleep(0.1)
    assert row is not None
    attempts = json.loads(row[0])
    assert [a["failure"] is not None for a in attempts] == [True, False]
    assert attempts[0]["failure"].startswith("500")
    assert row[1] == attempts[1]["key_id"] and row[2] == "ok"


def _http_date(seconds: float) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


def _rfc3339(seconds: float) -> str:
    return (datetime.now(UTC) + timedelta(seconds=seconds)).isoformat().replace("+00:00", "Z")


HINTS: dict[str, tuple[str, dict[str, Any]]] = {
    "retry-after seconds": ("openai", {"headers": {"retry-after": "40"}}),
    "retry-after date": ("openai", {"headers": {"retry-after": "DATE"}}),
    "retry-after-ms": ("openai", {"headers": {"retry-after-ms": "40000"}}),
    "google RetryInfo": (
        "gemini",
        {
            "error_details": [
                {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "40s"}
            ]
        },
    ),
    "anthropic reset": ("anthropic", {"headers": {"anthropic-ratelimit-requests-reset": "RFC"}}),
}


@pytest.mark.parametrize("hint", list(HINTS))
def test_each_kind_of_rate_limit_hint_sets_the_cooldown(
    hint: str, pooled: ProxyProcess, upstream: Upstream
) -> None:
    backend, fields = HINTS[hint]
    fields = json.loads(
        json.dumps(fields).replace("DATE", _http_date(40)).replace("RFC", _rfc3339(40))
    )
    model = f"{FRONT_BACKEND_MODEL[backend]}-hint-{hint.replace(' ', '-')}"
    upstream.enqueue(*[Reply(status=429, error_message="limited", **fields)] * 2)
    with pytest.raises(Exception) as first:  # both keys limited: the client gets the 429
        call(backend, pooled, model, stream=False)
    assert status_and_message(first.value)[0] == 429
    before = len(chat_keys(upstream))
    with pytest.raises(Exception) as caught:  # no key left: the proxy answers at once
        call(backend, pooled, model, stream=False)
    assert len(chat_keys(upstream)) == before
    error = caught.value
    status, _ = status_and_message(error)
    assert status == 429
    response = getattr(error, "response", None)
    headers = response.headers if response is not None else {}
    retry_after = float(headers.get("retry-after", "0"))
    assert 30 <= retry_after <= 41


def test_the_anthropic_sdk_streaming_helper_sees_only_the_fallback(
    pooled: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(status=529, error_message="overloaded"))
    upstream.set_default(Reply(text="helper text", text_chunks=4, chunk_delay=0.05))
    client = anthropic.Anthropic(base_url=f"{pooled.url}/anthropic", api_key=PROXY_KEY)
    with client.messages.stream(
        model="anthropic:claude-sonnet-4-5-helper",
        max_tokens=100,
        messages=[{"role": "user", "content": "hi"}],
    ) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(pieces) == "helper text" and len(pieces) >= 2
    assert final.stop_reason == "end_turn" and final.usage.output_tokens > 0


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("front", FRONTS)
def test_a_reset_connection_fails_over(
    front: str, stream: bool, pooled: ProxyProcess, upstream: Upstream
) -> None:
    model = f"{FRONT_BACKEND_MODEL[front]}-reset-{int(stream)}"
    upstream.enqueue(Reply(reset=True))
    upstream.set_default(Reply(text="after the reset"))
    assert call(front, pooled, model, stream=stream).text == "after the reset"
    assert set(chat_keys(upstream)) == set(KEYS[front])


def test_every_connection_resetting_gives_502_listing_them(
    pooled: ProxyProcess, upstream: Upstream
) -> None:
    upstream.set_default(Reply(reset=True))
    e = sdk_error("anthropic", pooled, "anthropic:claude-sonnet-4-5-allreset")
    status, message = status_and_message(e)
    assert status == 502
    assert "all 2 attempts failed" in message and message.count("connection error") == 2
    # the next request is answered normally (nothing is left half-done in the proxy)
    upstream.set_default(Reply(text="fine again"))
    assert call("anthropic", pooled, "anthropic:claude-sonnet-4-5", stream=True).text == "fine again"


def attempts_seen(upstream: Upstream) -> list[tuple[str, str | None, int | None]]:
    """(backend, key, status) of each chat request the upstream saw, in order."""
    return [
        (r.backend, r.key, r.status) for r in upstream.requests if r.method == "POST" and r.model
    ]


def key_index(backend: str, key: str | None) -> int:
    return KEYS[backend].index(key or "")


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("front", FRONTS)
def test_a_route_fails_over_to_another_backend(
    front: str, stream: bool, pooled: ProxyProcess, upstream: Upstream
) -> None:
    upstream.set_default(Reply(status=503, error_message="down"), backend="openai")
    upstream.set_default(Reply(text="anthropic took over"), backend="anthropic")
    got = call(front, pooled, "r-km", stream=stream)
    assert got.text == "anthropic took over"
    seen = attempts_seen(upstream)
    assert [b for b, _, _ in seen] == ["openai", "openai", "anthropic"]
    assert upstream.last("anthropic").model == "claude-km"


def test_each_policy_orders_the_attempts(pooled: ProxyProcess, upstream: Upstream) -> None:
    upstream.set_default(Reply(status=500, error_message="all down"))
    orders: dict[str, list[tuple[str, int]]] = {}
    for route in ROUTES:
        upstream.clear()
        with pytest.raises(openai.APIStatusError) as caught:
            call("openai", pooled, route, stream=False)
        assert caught.value.status_code == 500
        orders[route] = [(b, key_index(b, k)) for b, k, _ in attempts_seen(upstream)]
    # k: the first element with each of its keys
    assert [b for b, _ in orders["r-k"]] == ["openai", "openai"]
    assert sorted(i for _, i in orders["r-k"]) == [0, 1]
    # m: each element once, one key each
    assert [b for b, _ in orders["r-m"]] == ["openai", "anthropic", "gemini"]
    # km: each element with all its keys
    assert [b for b, _ in orders["r-km"]] == ["openai", "openai", "anthropic", "anthropic"]
    # mk: key index outer, element inner
    assert [b for b, _ in orders["r-mk"]] == ["openai", "anthropic", "openai", "anthropic"]
    assert orders["r-mk"][0][1] != orders["r-mk"][2][1]


def test_routes_are_listed_with_the_models(pooled: ProxyProcess) -> None:
    ids = {m.id for m in clients.openai_client(pooled.url, PROXY_KEY).models.list()}
    assert set(ROUTES) <= ids
    claude = anthropic.Anthropic(base_url=f"{pooled.url}/anthropic", api_key=PROXY_KEY)
    assert set(ROUTES) <= {m.id for m in claude.models.list()}
    gemini = clients.gemini_client(pooled.url, PROXY_KEY)
    names = {m.name for m in gemini.models.list()}
    assert {f"models/{r}" for r in ROUTES} <= names


def _say(proxy: ProxyProcess, text: str) -> str:
    reply = clients.openai_client(proxy.url, PROXY_KEY).chat.completions.create(
        model="openai:gpt-4o",
        messages=[{"role": "user", "content": text}],
        extra_headers={"x-session-id": "route-maker"},
    )
    return reply.choices[0].message.content or ""


def test_routes_made_in_the_chat_work_and_survive_a_restart(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    confdir = tmp_path_factory.mktemp("conf-routes")
    with running_proxy(upstream, confdir) as proxy:
        reply = _say(
            proxy,
            "!/create-failover-route(name=chat-route, policy=m) "
            "!/route-append(name=chat-route, openai:gpt-4o-chat, gemini:gemini-2.5-chat)",
        )
        assert "chat-route [m]: openai:gpt-4o-chat, gemini:gemini-2.5-chat" in reply
        assert "chat-route" in _say(proxy, "!/list-failover-routes")
        assert not attempts_seen(upstream)  # commands are answered by the proxy
        upstream.set_default(Reply(status=429, error_message="slow"), backend="openai")
        upstream.set_default(Reply(text="gemini answered"), backend="gemini")
        assert call("anthropic", proxy, "chat-route", stream=True).text == "gemini answered"
        upstream.reset()
    with running_proxy(upstream, confdir) as proxy:  # the same usage file
        assert "chat-route [m]: openai:gpt-4o-chat, gemini:gemini-2.5-chat" in _say(
            proxy, "!/route-list(name=chat-route)"
        )
        upstream.set_default(Reply(text="still routed"))
        assert call("gemini", proxy, "chat-route", stream=False).text == "still routed"
        assert upstream.last().backend == "openai"
        assert "deleted" in _say(proxy, "!/delete-failover-route(name=chat-route)")


@pytest.mark.parametrize("front", FRONTS)
def test_a_stream_that_goes_silent_ends_with_an_error(
    front: str, pooled: ProxyProcess, upstream: Upstream
) -> None:
    """After bytes reached the client nothing can be retried: the stream ends with an error
    event in the client's protocol (llm_idle_timeout=2) and the upstream is let go."""
    upstream.set_default(Reply(text="first part, then silence", text_chunks=3, chunk_delay=5))
    started = time.monotonic()
    with pytest.raises(Exception) as caught:
        call(front, pooled, f"{FRONT_BACKEND_MODEL[front]}-idle", stream=True)
    assert time.monotonic() - started < 5
    assert "sent nothing for 2 s" in str(caught.value)


@pytest.mark.parametrize("backend", ["openai", "anthropic"])
@pytest.mark.parametrize("front", FRONTS)
def test_a_stream_that_breaks_half_way_ends_with_an_error_event(
    front: str, backend: str, pooled: ProxyProcess, upstream: Upstream
) -> None:
    """Bytes reached the client: no retry (one upstream call), and instead of a cut connection
    the client's SDK reads an error event in its own protocol."""
    upstream.set_default(Reply(text="x" * 60, text_chunks=12, close_midstream=True))
    with pytest.raises(Exception) as caught:
        call(front, pooled, f"{FRONT_BACKEND_MODEL[backend]}-broken-{front}", stream=True)
    assert "stream broke" in str(caught.value)
    assert not isinstance(caught.value, (openai.APIConnectionError, anthropic.APIConnectionError))
    assert len(chat_keys(upstream)) == 1

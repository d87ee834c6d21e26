"""Bad input and failing backends: every client gets its own protocol's error, never a hang.

Asserted through the official SDKs' own error classes (they parse the body and the status) and,
for bodies an SDK would never send, through raw HTTP.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import anthropic
import httpx
import openai
import pytest
from google.genai import errors as gerrors

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY, UPSTREAM_KEYS, running_proxy
from tests.e2e.proxy import ProxyProcess, free_port
from tests.upstream.script import Reply, Upstream


def sdk_error(front: str, proxy: ProxyProcess, model: str, key: str = PROXY_KEY) -> Exception:
    """The exception the front's SDK raises for a plain call with `model`."""
    try:
        if front == "openai":
            clients.openai_call(
                clients.openai_client(proxy.url, key), model, stream=False, tools=False
            )
        elif front == "anthropic":
            clients.anthropic_call(
                clients.anthropic_client(proxy.url, key), model, stream=False, tools=False
            )
        else:
            clients.gemini_call(
                clients.gemini_client(proxy.url, key), model, stream=False, tools=False
            )
    except Exception as e:  # noqa: BLE001 - the test inspects it
        return e
    raise AssertionError("the call did not fail")


def status_and_message(e: Exception) -> tuple[int, str]:
    if isinstance(e, openai.APIStatusError | anthropic.APIStatusError):
        return e.status_code, str(e)
    if isinstance(e, gerrors.APIError):
        return e.code, f"{e.status} {e.message}"
    raise AssertionError(f"not an SDK status error: {type(e).__name__}: {e}")


FRONTS = ("openai", "anthropic", "gemini")


@pytest.mark.parametrize("front", FRONTS)
def test_wrong_proxy_key(front: str, proxy: ProxyProcess) -> None:
    e = sdk_error(front, proxy, "openai:gpt-4o", key="wrong-key")
    status, message = status_and_message(e)
    assert status == 401 and "proxy API key" in message
    if front != "gemini":
        assert isinstance(e, openai.AuthenticationError | anthropic.AuthenticationError)


@pytest.mark.parametrize("front", FRONTS)
def test_unknown_backend_prefix(front: str, proxy: ProxyProcess, upstream: Upstream) -> None:
    status, message = status_and_message(sdk_error(front, proxy, "mistral:large"))
    assert status == 404 and "unknown backend 'mistral'" in message
    assert upstream.requests == []


@pytest.mark.parametrize(
    ("path", "body", "shape"),
    [
        ("/v1/chat/completions", b"{oops", "openai"),
        ("/v1/chat/completions", b'{"model": "gpt-4o"}', "openai"),
        ("/v1/chat/completions", b'{"model": "gpt-4o", "messages": "hi"}', "openai"),
        ("/anthropic/v1/messages", b"[]", "anthropic"),
        ("/v1/messages", b'{"model": "x", "messages": []}', "anthropic"),
        ("/v1beta/models/gemini-2.5-pro:generateContent", b"{}", "gemini"),
        ("/v1beta/models/gemini-2.5-pro:generateContent", b'{"contents": "x"}', "gemini"),
    ],
)
def test_bad_bodies_get_400_in_the_client_protocol(
    path: str, body: bytes, shape: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    r = httpx.post(
        proxy.url + path, content=body, headers={"x-api-key": PROXY_KEY}, timeout=10
    )
    assert r.status_code == 400
    data = r.json()
    if shape == "anthropic":
        assert data["type"] == "error" and data["error"]["type"] == "invalid_request_error"
    elif shape == "gemini":
        assert data["error"]["status"] == "INVALID_ARGUMENT" and data["error"]["code"] == 400
    else:
        assert data["error"]["type"] == "invalid_request_error"
    assert "Traceback" not in r.text
    assert upstream.requests == []


def test_unknown_path_gets_404(proxy: ProxyProcess) -> None:
    r = httpx.get(proxy.url + "/v1/files", headers={"x-api-key": PROXY_KEY}, timeout=10)
    assert r.status_code == 404 and "unknown endpoint" in r.json()["error"]["message"]


@pytest.mark.parametrize("front", FRONTS)
@pytest.mark.parametrize("backend", ["openai", "anthropic", "gemini"])
def test_upstream_rate_limit_is_relayed(
    front: str, backend: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(
        Reply(
            status=429,
            error_message=f"quota exceeded for key {UPSTREAM_KEYS[backend]}",
            headers={"retry-after": "0"},  # relayed; no cooldown left behind
        )
    )
    e = sdk_error(front, proxy, f"{backend}:m1")
    status, message = status_and_message(e)
    assert status == 429 and "quota exceeded" in message
    assert UPSTREAM_KEYS[backend] not in message  # keys are scrubbed from relayed errors
    if isinstance(e, openai.APIStatusError | anthropic.APIStatusError):
        assert e.response.headers["retry-after"] == "0"


@pytest.mark.parametrize("front", FRONTS)
def test_upstream_server_error_is_relayed(
    front: str, proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(status=500, error_message="the model fell over"))
    status, message = status_and_message(sdk_error(front, proxy, "anthropic:claude-x"))
    assert status == 500 and "the model fell over" in message


def test_midstream_upstream_error_reaches_the_client_as_an_error(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text="partial answer here", midstream_error="overloaded now"))
    client = clients.openai_client(proxy.url, PROXY_KEY)
    with pytest.raises(openai.APIError, match="overloaded now"):
        for _ in client.chat.completions.create(
            model="anthropic:claude-x",
            messages=[{"role": "user", "content": "hi"}],
            stream=True,
        ):
            pass


@pytest.fixture(scope="module")
def slow_proxy(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProxyProcess]:
    dead = f"http://127.0.0.1:{free_port()}/v1"  # nothing listens there
    with running_proxy(
        upstream,
        tmp_path_factory.mktemp("conf-slow"),
        env={"OPENROUTER_API_BASE_URL": dead},
        extra=["llm_first_byte_timeout=1"],
    ) as process:
        yield process


@pytest.mark.parametrize("front", FRONTS)
def test_unreachable_backend_gets_502(front: str, slow_proxy: ProxyProcess) -> None:
    status, message = status_and_message(sdk_error(front, slow_proxy, "openrouter:x/y"))
    assert status == 502 and "unreachable" in message


@pytest.mark.parametrize("front", FRONTS)
def test_silent_backend_gets_504_after_the_timeout(
    front: str, slow_proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text="too late", delay_before_headers=4))
    started = time.monotonic()
    status, message = status_and_message(sdk_error(front, slow_proxy, "anthropic:claude-x"))
    assert status == 504 and "no response within 1 s" in message
    assert time.monotonic() - started < 3.5
    # the proxy stays usable afterwards, on the same and on new connections
    upstream.enqueue(Reply(text="fine again"))
    got = clients.openai_call(
        clients.openai_client(slow_proxy.url, PROXY_KEY), "anthropic:c", stream=False, tools=False
    )
    assert got.text == "fine again"


def test_no_traceback_or_key_in_the_proxy_log(proxy: ProxyProcess) -> None:
    log = proxy.log()
    assert "Traceback" not in log
    for key in UPSTREAM_KEYS.values():
        assert key not in log
    assert PROXY_KEY not in log
    json.dumps(log)  # the log is text

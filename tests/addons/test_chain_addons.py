"""The chain's addons on mitmproxy test flows: gateway, routing, responses, timeouts, conf file."""

from __future__ import annotations

import asyncio
import gzip
import json
import logging
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from mitmproxy import http
from mitmproxy.exceptions import OptionsError
from mitmproxy.proxy.mode_specs import ProxyMode
from mitmproxy.test import taddons, tflow

from addons._inject import batching_reader
from addons.conffile import ConfFile
from addons.config import Config
from addons.gateway import Gateway
from addons.responses import Responses
from addons.routing import Routing
from addons.timeouts import Timeouts
from protocol.exchange import exchange_of
from protocol.read_batching import BatchingReader


async def hook(result: Any) -> None:
    """Run a hook as mitmproxy does: it may return something to await."""
    if result is not None:
        await result


ENV = {
    "OPENAI_API_KEY": "sk-upstream-openai",
    "OPENAI_API_BASE_URL": "http://127.0.0.1:1/openai/v1",
    "ANTHROPIC_API_KEY": "sk-ant-upstream",
    "ANTHROPIC_API_BASE_URL": "http://127.0.0.1:1/anthropic/v1",
    "GEMINI_API_KEY": "gem-upstream",
    "GEMINI_API_BASE_URL": "http://127.0.0.1:1/gemini/v1beta",
    "LLM_INTERACTIVE_PROXY_API_KEY": "proxy-key",
}
CHAT = {"model": "openai:gpt-4o", "messages": [{"role": "user", "content": "hi"}]}


def gateway_flow(
    path: str, body: Any = None, *, method: str = "POST", headers: dict[str, str] | None = None
) -> http.HTTPFlow:
    f = tflow.tflow()
    f.client_conn.proxy_mode = ProxyMode.parse("reverse:http://127.0.0.1:9@8000")
    f.request = http.Request.make(
        method,
        f"http://127.0.0.1:9{path}",
        json.dumps(body).encode()
        if body is not None and not isinstance(body, bytes)
        else body or b"",
        {"authorization": "Bearer proxy-key", **(headers or {})},
    )
    return f


@pytest.fixture
def chain() -> tuple[Config, Gateway, Routing]:
    config = Config()
    config.apply(dict(ENV))
    return config, Gateway(config), Routing(config)


async def run_request(chain: tuple[Config, Gateway, Routing], f: http.HTTPFlow) -> None:
    config, gateway, routing = chain
    config.reachability.mark_ok("127.0.0.1", 1)
    with taddons.context(config, gateway, routing):
        await hook(gateway.request(f))
        await hook(routing.request(f))


def error_of(f: http.HTTPFlow) -> tuple[int, dict[str, Any]]:
    assert f.response is not None
    return f.response.status_code, json.loads(f.response.content or b"")


async def test_unknown_path_gets_404_in_the_guessed_protocol(chain: Any) -> None:
    f = gateway_flow("/v1/nothing", CHAT)
    await run_request(chain, f)
    status, body = error_of(f)
    assert status == 404 and "unknown endpoint" in body["error"]["message"]
    f = gateway_flow("/anthropic/v1/nothing", CHAT)
    await run_request(chain, f)
    status, body = error_of(f)
    assert status == 404 and body["type"] == "error"


@pytest.mark.parametrize(
    ("path", "headers", "shape"),
    [
        ("/v1/chat/completions", {"authorization": "Bearer wrong"}, "openai"),
        ("/anthropic/v1/messages", {"authorization": "", "x-api-key": "wrong"}, "anthropic"),
        ("/v1beta/models/gpt-4o:generateContent", {"authorization": ""}, "gemini"),
    ],
)
async def test_wrong_or_missing_proxy_key_gets_401(
    chain: Any, path: str, headers: dict[str, str], shape: str
) -> None:
    f = gateway_flow(path, CHAT, headers=headers)
    await run_request(chain, f)
    status, body = error_of(f)
    assert status == 401
    if shape == "gemini":
        assert body["error"]["status"] == "UNAUTHENTICATED"
    elif shape == "anthropic":
        assert body["error"]["type"] == "authentication_error"
    else:
        assert body["error"]["type"] == "authentication_error"
    assert "proxy-key" not in json.dumps(body)


@pytest.mark.parametrize(
    "headers",
    [{"x-api-key": "proxy-key"}, {"x-goog-api-key": "proxy-key"}],
)
async def test_each_sdk_way_of_sending_the_key_is_accepted(
    chain: Any, headers: dict[str, str]
) -> None:
    f = gateway_flow("/v1/chat/completions", CHAT, headers={"authorization": "", **headers})
    await run_request(chain, f)
    assert f.response is None


async def test_key_in_query_is_accepted_and_not_forwarded(chain: Any) -> None:
    body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
    f = gateway_flow(
        "/v1beta/models/gemini:gemini-2.5-pro:streamGenerateContent?alt=sse&key=proxy-key",
        body,
        headers={"authorization": ""},
    )
    await run_request(chain, f)
    assert f.response is None
    assert f.request.url == (
        "http://127.0.0.1:1/gemini/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    assert f.request.headers["x-goog-api-key"] == "gem-upstream"


@pytest.mark.parametrize(
    ("path", "raw"),
    [
        ("/v1/chat/completions", b"{not json"),
        ("/v1/chat/completions", b"[1, 2]"),
        ("/v1/chat/completions", json.dumps({"model": "gpt-4o"}).encode()),
        ("/anthropic/v1/messages", b"{not json"),
        ("/v1beta/models/x:generateContent", b'{"contents": 5}'),
    ],
)
async def test_bad_bodies_get_400(chain: Any, path: str, raw: bytes) -> None:
    f = gateway_flow(path, raw)
    await run_request(chain, f)
    status, body = error_of(f)
    assert status == 400
    assert "error" in body


async def test_unknown_backend_prefix_gets_404(chain: Any) -> None:
    f = gateway_flow("/v1/chat/completions", {**CHAT, "model": "mistral:large"})
    await run_request(chain, f)
    status, body = error_of(f)
    assert status == 404 and "unknown backend 'mistral'" in body["error"]["message"]
    ex = exchange_of(f.metadata)
    assert ex is not None and ex.outcome == "error"


async def test_same_protocol_forwards_the_body_with_only_the_model_changed(chain: Any) -> None:
    body = {**CHAT, "seed": 7, "some_future_field": {"x": [1]}, "stream": True}
    f = gateway_flow("/v1/chat/completions", body, headers={"openai-organization": "org"})
    await run_request(chain, f)
    assert f.response is None
    assert f.request.url == "http://127.0.0.1:1/openai/v1/chat/completions"
    assert f.request.headers["authorization"] == "Bearer sk-upstream-openai"
    assert f.request.headers["accept-encoding"] == "identity"
    assert f.request.headers["openai-organization"] == "org"
    assert json.loads(f.request.content or b"") == {**body, "model": "gpt-4o"}


async def test_converted_request_is_rendered_for_the_backend(chain: Any) -> None:
    body = {**CHAT, "model": "anthropic:claude-sonnet-4-5", "stream": True}
    f = gateway_flow("/v1/chat/completions", body, headers={"x-stainless-lang": "python"})
    await run_request(chain, f)
    assert f.request.url == "http://127.0.0.1:1/anthropic/v1/messages"
    assert f.request.headers["x-api-key"] == "sk-ant-upstream"
    assert f.request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in f.request.headers
    assert "x-stainless-lang" not in f.request.headers
    sent = json.loads(f.request.content or b"")
    assert sent["model"] == "claude-sonnet-4-5"
    assert sent["max_tokens"] > 0 and sent["stream"] is True
    assert sent["messages"] == [{"role": "user", "content": [{"type": "text", "text": "hi"}]}] or (
        sent["messages"] == [{"role": "user", "content": "hi"}]
    )


async def test_unreachable_backend_gets_502_in_the_client_protocol(chain: Any) -> None:
    config, gateway, routing = chain
    config.reachability.mark_down("127.0.0.1", 1, "cannot connect to 127.0.0.1:1: refused")
    f = gateway_flow("/anthropic/v1/messages", {**CHAT, "max_tokens": 10})
    with taddons.context(config, gateway, routing):
        await hook(gateway.request(f))
        await hook(routing.request(f))
    status, body = error_of(f)
    assert status == 502 and body["type"] == "error"
    assert "unreachable" in body["error"]["message"]


async def test_count_tokens_answered_locally_for_another_protocol(chain: Any) -> None:
    f = gateway_flow(
        "/v1/messages/count_tokens",
        {"model": "openai:gpt-4o", "messages": [{"role": "user", "content": "hello world"}]},
    )
    await run_request(chain, f)
    status, body = error_of(f)
    assert status == 200 and body["input_tokens"] > 2


async def test_models_lists_come_from_the_backends(chain: Any, monkeypatch: Any) -> None:
    config, gateway, routing = chain

    async def fake_models(backends: Any) -> dict[str, list[str]]:
        return {"openai": ["gpt-4o"], "gemini": ["gemini-2.5-pro"]}

    monkeypatch.setattr(config.catalog, "models", fake_models)
    f = gateway_flow("/v1/models", method="GET")
    await run_request(chain, f)
    _, body = error_of(f)
    assert [m["id"] for m in body["data"]] == ["openai:gpt-4o", "gemini:gemini-2.5-pro"]
    f = gateway_flow("/v1beta/models", method="GET")
    await run_request(chain, f)
    _, body = error_of(f)
    assert body["models"][1]["name"] == "models/gemini:gemini-2.5-pro"


async def test_intercepted_other_hosts_are_untouched(chain: Any) -> None:
    f = tflow.tflow()
    f.request.url = "https://example.com/v1/chat/completions"
    f.request.content = b"not json at all"
    await run_request(chain, f)
    assert f.response is None and exchange_of(f.metadata) is None
    assert f.request.url == "https://example.com/v1/chat/completions"


async def test_upstream_error_is_relayed_in_the_client_protocol(chain: Any) -> None:
    config, gateway, routing = chain
    responses = Responses(config)
    f = gateway_flow("/anthropic/v1/messages", {**CHAT, "max_tokens": 10})
    await run_request(chain, f)
    f.response = http.Response.make(
        429,
        json.dumps({"error": {"message": "slow down sk-upstream-openai", "type": "rate"}}),
        {"content-type": "application/json", "retry-after": "7"},
    )
    with taddons.context(config, responses):
        responses.responseheaders(f)
        responses.response(f)
    status, body = error_of(f)
    assert status == 429 and body["type"] == "error"
    assert body["error"]["type"] == "rate_limit_error"
    assert "slow down" in body["error"]["message"]
    assert "sk-upstream-openai" not in body["error"]["message"]
    assert f.response is not None and f.response.headers["retry-after"] == "7"


class RecordingReader(BatchingReader):
    """A batching reader that records being told to expect a flood."""

    expected = 0

    def expect_flood(self) -> None:
        self.expected += 1


class ProxyServerStub:
    """The proxyserver addon as `addons._inject.connection_handler` sees it: the handler of
    each client connection, with the transports of its connections."""

    name = "proxyserver"

    def __init__(self, f: http.HTTPFlow, reader: Any) -> None:
        handler = SimpleNamespace(transports={f.server_conn: SimpleNamespace(reader=reader)})
        self.connections = {f.client_conn.id: handler}


async def test_a_streamed_answer_tells_its_upstream_reader_when_its_first_bytes_go_out(
    chain: Any,
) -> None:
    """The run command reads upstream connections in batches (`protocol.read_batching`): once a
    stream's first bytes went to the client, the reader of that upstream connection batches
    the flood that follows."""
    config, _, _ = chain
    f = gateway_flow(
        "/v1/chat/completions", {**CHAT, "model": "anthropic:claude-x", "stream": True}
    )
    await run_request(chain, f)
    reader = RecordingReader(asyncio.StreamReader(), asyncio.Transport())
    f.response = http.Response.make(200, b"", {"content-type": "text/event-stream"})
    with taddons.context(config, ProxyServerStub(f, reader)):
        Responses(config).responseheaders(f)
        other = tflow.tflow()  # a connection not read in batches (stock mitmdump's)
        assert batching_reader(f) is reader and batching_reader(other) is None
    stream = f.response.stream
    assert callable(stream)
    start = {
        "type": "message_start",
        "message": {
            "id": "m1",
            "type": "message",
            "role": "assistant",
            "model": "claude-x",
            "content": [],
            "stop_reason": None,
            "usage": {"input_tokens": 3, "output_tokens": 0},
        },
    }
    event = b"event: message_start\ndata: " + json.dumps(start).encode() + b"\n\n"
    assert stream(event[:30]) == [] and reader.expected == 0
    assert stream(event[30:]) and reader.expected == 1
    stream(b'event: ping\ndata: {"type": "ping"}\n\n')
    assert reader.expected == 1


async def test_timeout_timer_is_set_and_cancelled(chain: Any) -> None:
    config, gateway, routing = chain
    timeouts = Timeouts()
    f = gateway_flow("/v1/chat/completions", CHAT)
    await run_request(chain, f)
    with taddons.context(config, timeouts) as tctx:
        tctx.configure(timeouts, llm_first_byte_timeout="30")
        timeouts.request(f)
        assert f.id in timeouts._timers
        timeouts.responseheaders(f)
        assert f.id not in timeouts._timers


def test_timeout_options_land_in_the_shared_config() -> None:
    """Routing and failover read the timeouts from `Config`: the one place they are kept."""
    config = Config()
    timeouts = Timeouts(config)
    with taddons.context(config, timeouts) as tctx:
        tctx.configure(timeouts, llm_idle_timeout="5,gemini=9", llm_connect_timeout="3")
        assert config.idle_timeout.get("gemini") == 9 and config.idle_timeout.get("openai") == 5
        assert config.connect_timeout.get("anthropic") == 3
        with pytest.raises(OptionsError):
            tctx.configure(timeouts, llm_first_byte_timeout="soon")


def test_conf_file_fills_only_what_the_user_left_at_default(tmp_path: Path) -> None:
    conf = tmp_path / "x.conf"
    conf.write_text("ssl_insecure: false\nllm_first_byte_timeout: 42\nnot_an_option: 1\n")
    config = Config()
    cf = ConfFile()
    with taddons.context(config, Timeouts()) as tctx:
        tctx.options.update(ssl_insecure=True)  # as if set on the command line
        tctx.master.addons.add(cf)
        cf.apply(str(conf))
        assert tctx.options.llm_first_byte_timeout == "42"
        assert tctx.options.ssl_insecure is True


def test_another_conf_file_replaces_what_the_first_one_set(tmp_path: Path) -> None:
    """`llm_conf` changed after the first file was applied (the run command's `--set`): the
    old file's values the user did not set go back to their defaults, then the new file applies
    (over mitm.conf); what the user set in the same `--set`s stays."""
    first = tmp_path / "first.conf"
    first.write_text("ssl_insecure: true\nrawtcp: false\n")
    second = tmp_path / "second.conf"
    second.write_text("showhost: true\nrawtcp: true\n")
    config = Config()
    cf = ConfFile()
    with taddons.context(config, Timeouts(config)) as tctx:
        tctx.master.addons.add(cf)
        cf.apply(str(first))
        assert tctx.options.ssl_insecure is True
        assert tctx.options.llm_idle_timeout == "120"  # mitm.conf's, under the named file
        tctx.options.update(llm_conf=str(second), rawtcp=False)
        assert tctx.options.ssl_insecure is False
        assert tctx.options.showhost is True
        assert tctx.options.rawtcp is False  # the user's, not the new file's
        assert tctx.options.llm_idle_timeout == "120"
        with pytest.raises(OptionsError, match="not found"):
            tctx.options.update(llm_conf=str(tmp_path / "missing.conf"))


def test_a_chain_option_set_twice_is_an_error_not_a_silent_unload(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """mitmproxy holds `--set` values of a script's options until the script declares them, and
    fails the whole script without a word when one was given twice: the chain reports it."""
    from mitmproxy import options

    from addons.conffile import check_deferred

    opts = options.Options()
    opts.set("usage_db=a.db", "usage_db=b.db", "llm_conf=x.conf", defer=True)
    opts.add_option("usage_db", str, "", "")
    opts.add_option("llm_conf", str, "mitm.conf", "")
    with caplog.at_level(logging.ERROR, logger="addons.conffile"):
        parsed = check_deferred(opts)
    assert parsed == {"llm_conf": "x.conf"}
    assert "usage_db" not in opts.deferred
    assert any("--set usage_db: Received multiple values" in r.getMessage() for r in caplog.records)
    opts.process_deferred()  # what mitmproxy does next: no longer raises
    assert opts.usage_db == "" and opts.llm_conf == "x.conf"


async def test_without_a_proxy_key_only_local_clients_are_accepted() -> None:
    config = Config()
    config.apply({k: v for k, v in ENV.items() if k != "LLM_INTERACTIVE_PROXY_API_KEY"})
    chain = (config, Gateway(config), Routing(config))
    local = gateway_flow("/v1/chat/completions", CHAT, headers={"authorization": ""})
    local.client_conn.peername = ("::ffff:127.0.0.1", 5000)
    await run_request(chain, local)
    assert local.response is None
    remote = gateway_flow("/v1/chat/completions", CHAT, headers={"authorization": ""})
    remote.client_conn.peername = ("192.0.2.7", 5000)
    await run_request(chain, remote)
    status, body = error_of(remote)
    assert status == 401 and "only local clients" in body["error"]["message"]


async def test_the_chain_loads_beside_every_stock_mitmproxy_addon() -> None:
    """mitmdump/mitmweb -s addons/chain.py: no part of the chain may share the name of an addon
    of mitmdump's or mitmweb's (mitmproxy refuses the script; found with a class `Intercept`)."""
    from mitmproxy import options
    from mitmproxy.tools.dump import DumpMaster
    from mitmproxy.tools.web.master import WebMaster

    from addons.chain import LLMProxy

    dump = DumpMaster(options.Options(), with_termlog=False, with_dumper=False)
    dump.addons.add(LLMProxy())
    web = WebMaster(options.Options(), with_termlog=False)
    web.addons.add(LLMProxy())


def chat_completion(content: str, model: str = "gpt-4o") -> bytes:
    return json.dumps(
        {
            "id": "c1",
            "object": "chat.completion",
            "created": 1,
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "finish_reason": "stop",
                    "logprobs": None,
                    "message": {"role": "assistant", "content": content, "refusal": None},
                }
            ],
            "usage": {"prompt_tokens": 5, "completion_tokens": 3, "total_tokens": 8},
        }
    ).encode()


async def answer_whole(chain: Any, body: bytes, *, gzipped: bool = False) -> http.HTTPFlow:
    """An OpenAI client's request through gateway, loop guard and routing to the OpenAI
    backend, answered whole with `body` (sent gzip-encoded with `gzipped`)."""
    from addons.loops import Loops

    config, gateway, routing = chain
    loops = Loops(config)
    f = gateway_flow("/v1/chat/completions", CHAT)
    config.reachability.mark_ok("127.0.0.1", 1)
    with taddons.context(config, gateway, loops, routing) as tctx:
        loops.configure({"llm_env_file"} | set(tctx.options.keys()))
        await hook(gateway.request(f))
        loops.request(f)
        await hook(routing.request(f))
    f.response = http.Response.make(200, body, {"content-type": "application/json"})
    if gzipped:
        f.response.headers["content-encoding"] = "gzip"
        f.response.raw_content = gzip.compress(body)
    responses = Responses(config)
    with taddons.context(config, responses):
        responses.responseheaders(f)
        responses.response(f)
    return f


async def test_a_short_answer_in_the_clients_protocol_goes_on_unread(chain: Any) -> None:
    """Same protocol, too little text for a loop: the backend's body reaches the client as it
    came (the model named as the client named it), its usage is the backend's, and it is read
    into canonical form only when something asks for it."""
    from protocol.exchange import answer_of

    f = await answer_whole(chain, chat_completion("Hello there."))
    ex = exchange_of(f.metadata)
    assert ex is not None and ex.outcome == "ok" and ex.answer is None
    assert f.response is not None and f.response.content is not None
    sent = chat_completion("Hello there.")
    assert json.loads(f.response.content) == {**json.loads(sent), "model": "openai:gpt-4o"}
    assert sent.split(b'"choices"')[1] == f.response.content.split(b'"choices"')[1]
    assert (ex.usage.input_tokens, ex.usage.output_tokens, ex.usage_source) == (5, 3, "upstream")
    answer = answer_of(ex)
    assert answer is not None and answer.parts[0].text == "Hello there."  # type: ignore[union-attr]
    assert ex.answer is answer


@pytest.mark.parametrize("looping", [False, True])
async def test_a_gzipped_answer_reaches_the_client_whole(chain: Any, looping: bool) -> None:
    """A backend that compresses its answer though asked not to: the body the client gets
    (renamed, or rewritten by the loop guard) matches its content-encoding header."""
    text = "Intro. " + "We try the same fix again and it fails. " * 12 if looping else "Hi."
    f = await answer_whole(chain, chat_completion(text), gzipped=True)
    assert f.response is not None and f.response.raw_content is not None
    encoded = f.response.headers.get("content-encoding")
    body = gzip.decompress(f.response.raw_content) if encoded else f.response.raw_content
    got = json.loads(body)
    assert got["model"] == "openai:gpt-4o"
    assert ("loop detected" in got["choices"][0]["message"]["content"]) is looping
    assert int(f.response.headers["content-length"]) == len(f.response.raw_content)


async def test_a_long_answer_in_the_clients_protocol_is_still_checked_for_loops(
    chain: Any,
) -> None:
    looping = "Intro. " + "We try the same fix again and it fails. " * 12
    f = await answer_whole(chain, chat_completion(looping))
    ex = exchange_of(f.metadata)
    assert ex is not None and ex.outcome == "loop_halted" and ex.answer is not None
    assert f.response is not None
    text = json.loads(f.response.content or b"")["choices"][0]["message"]["content"]
    assert "loop detected" in text and text.count("We try the same fix again") < 12

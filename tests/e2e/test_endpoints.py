"""The proxy's own endpoints, the Anthropic front at the root, and stock mitmdump with the chain."""

from __future__ import annotations

import gzip
import json as jsonlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.e2e import clients
from tests.e2e.conftest import MODELS, PROXY_KEY, backend_env, running_proxy
from tests.e2e.proxy import BIN, REPO, ProxyProcess, free_port
from tests.upstream.script import Reply, Upstream


def test_openai_models_list(proxy: ProxyProcess, upstream: Upstream) -> None:
    ids = [m.id for m in clients.openai_client(proxy.url, PROXY_KEY).models.list()]
    for backend in ("openai", "openrouter", "anthropic", "gemini"):
        assert any(i.startswith(f"{backend}:") for i in ids), (backend, ids)
    # every listed name is usable as a model
    upstream.enqueue(Reply(text="ok"))
    got = clients.openai_call(
        clients.openai_client(proxy.url, PROXY_KEY), ids[-1], stream=False, tools=False
    )
    assert got.text == "ok"


def test_anthropic_models_list(proxy: ProxyProcess) -> None:
    page = clients.anthropic_client(proxy.url, PROXY_KEY).models.list()
    ids = [m.id for m in page.data]
    assert any(i.startswith("anthropic:") for i in ids) and any(
        i.startswith("gemini:") for i in ids
    )


def test_gemini_models_list(proxy: ProxyProcess) -> None:
    client = clients.gemini_client(proxy.url, PROXY_KEY)
    names = [m.name or "" for m in client.models.list()]
    assert any(n.startswith("models/gemini:") for n in names), names


def test_models_list_is_cached(proxy: ProxyProcess, upstream: Upstream) -> None:
    client = clients.openai_client(proxy.url, PROXY_KEY)
    client.models.list()
    upstream.clear()
    client.models.list()
    assert [r for r in upstream.requests if r.path.endswith("/models")] == []


def test_anthropic_count_tokens_forwarded_to_anthropic(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    client = clients.anthropic_client(proxy.url, PROXY_KEY)
    result = client.messages.count_tokens(
        model=f"anthropic:{MODELS['anthropic']}",
        messages=[{"role": "user", "content": "How many tokens is this?"}],
    )
    assert result.input_tokens > 0
    assert upstream.requests[-1].path.endswith("/messages/count_tokens")
    assert upstream.requests[-1].body["model"] == MODELS["anthropic"]


def test_anthropic_count_tokens_counted_locally_for_other_backends(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    client = clients.anthropic_client(proxy.url, PROXY_KEY)
    short = client.messages.count_tokens(
        model="openai:gpt-4o", messages=[{"role": "user", "content": "hi"}]
    )
    long = client.messages.count_tokens(
        model="openai:gpt-4o", messages=[{"role": "user", "content": "hello world " * 50}]
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert upstream.requests == []


def test_anthropic_front_at_the_root_url(proxy: ProxyProcess, upstream: Upstream) -> None:
    upstream.enqueue(Reply(text="from the root"))
    got = clients.anthropic_call(
        clients.anthropic_client(proxy.url, PROXY_KEY, prefix=""),
        "openai:gpt-4o",
        stream=True,
        tools=False,
    )
    assert got.text == "from the root"


def test_base_url_probe_and_health(proxy: ProxyProcess) -> None:
    for path in ("/", "/anthropic"):
        assert httpx.head(proxy.url + path, headers={"x-api-key": PROXY_KEY}).status_code == 200
    assert httpx.get(proxy.url + "/health", headers={"x-api-key": PROXY_KEY}).json() == {
        "status": "ok"
    }


@pytest.fixture(scope="module")
def mitmdump_proxy(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ProxyProcess]:
    confdir = tmp_path_factory.mktemp("conf-mitmdump")
    with running_proxy(upstream, confdir, launcher="mitmdump") as process:
        yield process


@pytest.mark.parametrize("backend", ["anthropic", "gemini"])
def test_stock_mitmdump_runs_the_same_chain(
    backend: str, mitmdump_proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.enqueue(Reply(text="via mitmdump", text_chunks=4))
    got = clients.openai_call(
        clients.openai_client(mitmdump_proxy.url, PROXY_KEY),
        f"{backend}:{MODELS[backend]}",
        stream=True,
        tools=False,
    )
    assert got.text == "via mitmdump" and got.finish == "stop"
    assert upstream.requests[-1].backend == backend


USER_SCRIPT = """
class Stamp:
    def request(self, flow):
        flow.request.headers["x-user-script"] = "request"

    def response(self, flow):
        flow.response.headers["x-user-script"] = "response"

addons = [Stamp()]
"""


@pytest.mark.parametrize("fast_dispatch", [True, False])
def test_a_users_own_script_runs_beside_the_chain(
    fast_dispatch: bool, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`mitmdump -s addons/chain.py -s mine.py`: the user's script sees every request and
    response, with the chain's cached hook dispatch (`addons.dispatch`) and without it."""
    tmp = tmp_path_factory.mktemp("user-script")
    mine = tmp / "mine.py"
    mine.write_text(USER_SCRIPT)
    with running_proxy(
        upstream,
        tmp / "conf",
        launcher="mitmdump",
        scripts=[mine],
        extra=[f"llm_fast_dispatch={str(fast_dispatch).lower()}"],
    ) as process:
        client = clients.openai_client(process.url, PROXY_KEY)
        for text in ("one", "two"):
            upstream.enqueue(Reply(text=text))
            raw = client.chat.completions.with_raw_response.create(
                model=f"openai:{MODELS['openai']}",
                messages=[{"role": "user", "content": "hi"}],
            )
            assert raw.headers["x-user-script"] == "response"
            assert raw.parse().choices[0].message.content == text
            assert upstream.last("openai").headers["x-user-script"] == "request"


def test_saved_flows_hold_no_keys_and_a_summary(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`mitmdump -w`: the saved flow names the key (`<ANTHROPIC_API_KEY>`), never holds it."""
    from mitmproxy import io as mio

    tmp = tmp_path_factory.mktemp("saved")
    saved = tmp / "flows.mitm"
    env = backend_env(upstream)
    with running_proxy(
        upstream, tmp / "conf", launcher="mitmdump", extra=[f"save_stream_file={saved}"]
    ) as process:
        upstream.enqueue(Reply(text="saved"))
        got = clients.openai_call(
            clients.openai_client(process.url, PROXY_KEY),
            f"anthropic:{MODELS['anthropic']}",
            stream=True,
            tools=False,
        )
        assert got.text == "saved"
    raw = saved.read_bytes()
    for secret in (*(env[k] for k in env if k.endswith("_API_KEY")), PROXY_KEY):
        assert secret.encode() not in raw, secret
    with saved.open("rb") as f:
        (flow,) = list(mio.FlowReader(f).stream())
    assert flow.request.headers["x-api-key"] == "<ANTHROPIC_API_KEY>"
    summary = flow.metadata["llm"]
    assert summary["front"] == "openai" and summary["outcome"] == "ok"
    assert summary["attempts"][0] == {
        "backend": "anthropic",
        "model": MODELS["anthropic"],
        "key_id": "ANTHROPIC_API_KEY",
        "failure": None,
    }


def test_the_run_command_reads_the_environment_with_no_options(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`make run` sets no option: backends still come from the environment (and mitm.conf)."""
    confdir = tmp_path_factory.mktemp("conf-plain")
    with running_proxy(upstream, confdir, proxy_key=False, as_run_command=True) as process:
        assert "backends: openai (1 key), openrouter (1 key)" in process.log()
        upstream.enqueue(Reply(text="plain start"))
        got = clients.openai_call(
            clients.openai_client(process.url, "any"),
            "gemini:gemini-2.5-pro",
            stream=False,
            tools=False,
        )
        assert got.text == "plain start"
        # the launcher became `python -O -m addons.serve` in the same process (addons/launch.py)
        cmdline = Path(f"/proc/{process.proc.pid}/cmdline").read_bytes().split(b"\0")
        assert cmdline[1:4] == [b"-O", b"-m", b"addons.serve"]


def test_a_compressed_request_body_reaches_the_backend_readable(
    proxy: ProxyProcess, upstream: Upstream
) -> None:
    """A client that gzips its body: the proxy reads it, and the body it sends on is plain
    JSON without the client's content-encoding."""
    upstream.reset()
    upstream.set_default(Reply(text="read it"))
    body = {"model": "openai:gpt-4o", "messages": [{"role": "user", "content": "hi"}]}
    r = httpx.post(
        f"{proxy.url}/v1/chat/completions",
        content=gzip.compress(jsonlib.dumps(body).encode()),
        headers={
            "content-encoding": "gzip",
            "content-type": "application/json",
            "authorization": f"Bearer {PROXY_KEY}",
        },
        timeout=10,
    )
    assert r.status_code == 200 and r.json()["choices"][0]["message"]["content"] == "read it"
    sent = upstream.last("openai")
    assert "content-encoding" not in sent.headers and sent.body["messages"][0]["content"] == "hi"


@pytest.mark.parametrize("launcher", ["llm-proxy", "mitmdump"])
def test_llm_conf_names_the_options_file(
    launcher: str, upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    """`--set llm_conf=FILE` reads FILE instead of mitm.conf, under either launcher (mitmdump
    holds a chain option's `--set` back until the chain has loaded)."""
    tmp = tmp_path_factory.mktemp("llm-conf")
    conf = tmp / "team.conf"
    conf.write_text('llm_redaction_patterns:\n  add:\n    ticket: "TICKET-[0-9]{6}"\n')
    with running_proxy(
        upstream, tmp / "conf", launcher=launcher, extra=[f"llm_conf={conf}"]
    ) as process:
        upstream.enqueue(Reply(text="noted"))
        clients.openai_client(process.url, PROXY_KEY).chat.completions.create(
            model=f"openai:{MODELS['openai']}",
            messages=[{"role": "user", "content": "close TICKET-123456 for me"}],
        )
        sent = upstream.last("openai").raw.decode()
    assert "TICKET-123456" not in sent and "(API_KEY_HAS_BEEN_REDACTED)" in sent


@pytest.mark.parametrize("launcher", ["llm-proxy", "mitmdump"])
@pytest.mark.parametrize(
    ("sets", "reason"),
    [
        (["usage_db=a.db", "usage_db=b.db"], "multiple values for usage_db"),
        (["llm_conf=no-such.conf"], "configuration file not found: no-such.conf"),
    ],
)
def test_a_bad_set_stops_the_start_with_its_reason(
    launcher: str, sets: list[str], reason: str, tmp_path: Path
) -> None:
    """A chain option given twice, or a missing options file: the proxy does not start (mitmdump
    would otherwise drop the whole chain without a word and relay every request to nowhere)."""
    cmd = (
        [str(BIN / "llm-proxy")]
        if launcher == "llm-proxy"
        else [str(BIN / "mitmdump"), "-s", "addons/chain.py"]
    )
    port = free_port()
    args = [
        f"mode=reverse:http://127.0.0.1:9@127.0.0.1:{port}",
        f"confdir={tmp_path}",
        "llm_env_file=",
        *sets,
    ]
    for a in args:
        cmd += ["--set", a]
    done = subprocess.run(
        cmd,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        env={k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")},
    )
    said = done.stdout + done.stderr
    assert done.returncode != 0, said
    assert reason in said.lower(), said
    assert "Traceback" not in said

"""The Gemini CLI as a backend (`gemini-cli-direct:`), end to end with the three SDKs.

The proxy finds a fake `gemini` (tests/fake_gemini_cli) on its PATH; the fake behaves like the
real CLI for the flags used and logs every run (argv, stdin, cwd, env, pids) to a file.
"""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import openai
import pytest

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY, UPSTREAM_KEYS, call, running_proxy
from tests.e2e.proxy import ProxyProcess
from tests.e2e.test_errors import FRONTS, status_and_message
from tests.upstream.script import Upstream

FAKE_DIR = Path(__file__).resolve().parents[1] / "fake_gemini_cli"
MODEL = "gemini-cli-direct:gemini-2.5-pro"
REPLY = "one two three four five six"


@pytest.fixture(scope="module")
def cli_log(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("cli") / "runs.jsonl"


@pytest.fixture(scope="module")
def cli_proxy(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory, cli_log: Path
) -> Iterator[ProxyProcess]:
    env = {
        "PATH": f"{FAKE_DIR}{os.pathsep}{os.environ.get('PATH', '')}",
        "GEMINI_CLI_TIMEOUT": "3",
        "GEMINI_CLI_MAX_PROCESSES": "1",
        "GEMINI_CLI_ENV_ALLOWLIST": "FAKE_CLI_DELAY,FAKE_CLI_LOG,FAKE_CLI_REPLY",
        "FAKE_CLI_DELAY": "0.15",
        "FAKE_CLI_LOG": str(cli_log),
        "FAKE_CLI_REPLY": REPLY,
    }
    with running_proxy(upstream, tmp_path_factory.mktemp("conf-cli"), env=env) as process:
        yield process


def runs(log: Path) -> list[dict[str, Any]]:
    if not log.exists():
        return []
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def alive(pid: int) -> bool:
    """Running (a killed process that nobody reaped yet, a zombie, is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize("front", FRONTS)
def test_each_sdk_gets_the_clis_answer(
    front: str, stream: bool, cli_proxy: ProxyProcess, upstream: Upstream
) -> None:
    upstream.clear()
    got = call(front, cli_proxy, MODEL, stream=stream)
    assert got.text.split() == REPLY.split()
    assert not upstream.requests  # no API was called


def test_the_stream_arrives_as_the_cli_prints_it(cli_proxy: ProxyProcess) -> None:
    client = clients.openai_client(cli_proxy.url, PROXY_KEY)
    started = time.monotonic()
    arrivals = []
    for chunk in client.chat.completions.create(
        model=MODEL, messages=[{"role": "user", "content": "count"}], stream=True
    ):
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic() - started)
    assert len(arrivals) >= 3
    assert arrivals[0] < arrivals[-1] - 0.4  # words came one by one (0.15 s apart)


def test_the_whole_conversation_is_the_prompt(cli_proxy: ProxyProcess, cli_log: Path) -> None:
    before = len(runs(cli_log))
    clients.openai_client(cli_proxy.url, PROXY_KEY).chat.completions.create(
        model=MODEL,
        messages=[
            {"role": "system", "content": "You answer in French."},
            {"role": "user", "content": "What is 2+2?"},
            {"role": "assistant", "content": "Quatre."},
            {"role": "user", "content": "And 3+3?"},
        ],
        extra_headers={"x-session-id": "cli-conversation"},
    )
    run = runs(cli_log)[before]
    text = run["stdin"]
    for piece in ("You answer in French.", "What is 2+2?", "Quatre.", "And 3+3?"):
        assert piece in text
    assert text.rindex("And 3+3?") > text.rindex("Quatre.")
    assert "gemini-2.5-pro" in run["argv"]
    assert "cli-conversation" in run["cwd"] or run["cwd"].endswith(run["cwd"].split("/")[-1])
    secrets = set(UPSTREAM_KEYS.values()) | {PROXY_KEY}
    assert not secrets & set(run["env"].values())
    assert not any(name.endswith("_API_KEY") for name in run["env"])


def test_a_cli_that_never_answers_is_killed_after_the_timeout(
    cli_proxy: ProxyProcess, cli_log: Path
) -> None:
    before = len(runs(cli_log))
    started = time.monotonic()
    with pytest.raises(anthropic.APIStatusError) as caught:
        clients.anthropic_client(cli_proxy.url, PROXY_KEY).messages.create(
            model=MODEL,
            max_tokens=100,
            messages=[{"role": "user", "content": "FAKE_CLI_MODE=hang now"}],
        )
    assert caught.value.status_code == 504 and time.monotonic() - started < 8
    logged = runs(cli_log)[before:]
    pids = {r[k] for r in logged for k in ("pid", "grandchild") if k in r}
    deadline = time.monotonic() + 3
    while any(alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert len(pids) >= 2 and not any(alive(p) for p in pids)


def test_a_client_going_away_kills_the_cli(cli_proxy: ProxyProcess, cli_log: Path) -> None:
    before = len(runs(cli_log))
    client = clients.openai_client(cli_proxy.url, PROXY_KEY)
    stream = client.chat.completions.create(
        model=MODEL,
        messages=[{"role": "user", "content": "FAKE_CLI_MODE=stall please"}],
        stream=True,
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            break
    stream.close()
    deadline = time.monotonic() + 3
    pid = runs(cli_log)[before]["pid"]
    while alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not alive(pid)


def test_the_concurrency_cap_holds(cli_proxy: ProxyProcess, cli_log: Path) -> None:
    """GEMINI_CLI_MAX_PROCESSES=1: two requests at once run one after the other."""
    before = len(runs(cli_log))
    results: list[str] = []

    def ask() -> None:
        results.append(call("openai", cli_proxy, MODEL, stream=False).text)

    threads = [threading.Thread(target=ask) for _ in range(2)]
    started = time.monotonic()
    for t in threads:
        t.start()
    for t in threads:
        t.join(20)
    took = time.monotonic() - started
    assert [r.split() for r in results] == [REPLY.split()] * 2
    one_run = 0.15 * (len(REPLY.split()) + 2)
    assert took >= 2 * one_run * 0.9
    assert len([r for r in runs(cli_log)[before:] if "pid" in r]) == 2


def test_a_cli_that_is_not_logged_in_gives_a_clear_401(cli_proxy: ProxyProcess) -> None:
    gemini = clients.gemini_client(cli_proxy.url, PROXY_KEY)
    try:
        gemini.models.generate_content(model=MODEL, contents="FAKE_CLI_MODE=noauth hi")
    except Exception as e:  # noqa: BLE001 - inspected below
        status, message = status_and_message(e)
    else:
        raise AssertionError("no error")
    assert status == 401 and "auth" in message.lower()


def test_an_unknown_executable_leaves_the_backend_off(
    upstream: Upstream, tmp_path_factory: pytest.TempPathFactory
) -> None:
    with running_proxy(
        upstream, tmp_path_factory.mktemp("conf-nocli"), extra=["gemini_cli_path=no-such-gemini"]
    ) as proxy, pytest.raises(openai.NotFoundError, match="not configured"):
        call("openai", proxy, MODEL, stream=False)

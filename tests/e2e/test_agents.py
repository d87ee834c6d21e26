"""Real coding agents, unmodified, completing a task through the proxy to each backend.

Claude Code, Gemini CLI and Codex (0.94, the last that speaks chat completions, and the newest,
which speaks only the Responses API) run in their non-interactive modes against the real proxy,
whose backends are the strict test upstream. In each task the upstream asks for a tool the
agent has (reading a note in a temporary workspace), the agent runs it and sends the result
back, and the upstream answers with the final text. Every agent is tried with every backend;
every agent is rerouted to every backend by `!/set(model=...)` at the start of its prompt, both
in a new conversation and in a resumed one (the history, tool call and result included, then
goes to the new backend). Nothing leaves 127.0.0.1: proxies are off, telemetry and update
checks are switched off, and every run has a timeout.

The agents are installed once into a cache (`agents.py`); without the npm registry these tests
are skipped. Combinations that fail because of a proxy bug reported to the lead are marked
`xfail(strict=True)` in `KNOWN_FAILURES`, so a fix shows up as an unexpected pass.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, cast

import pytest

from tests.e2e import agent_runs, agents
from tests.e2e.agent_runs import Launch, Run
from tests.e2e.agents import Agent
from tests.e2e.conftest import BACKENDS, MODELS, PROXY_KEY
from tests.e2e.proxy import ProxyProcess
from tests.upstream import conversation
from tests.upstream.script import RecordedRequest, Reply, ToolCall, Upstream
from tests.upstream.server import Backend

pytestmark = [pytest.mark.agents, pytest.mark.timeout(300)]

AGENT_TIMEOUT = 90.0  # seconds for one agent run; a run stuck on the network fails here
NOTE = "note.txt"
ASK = f"Read {NOTE} and tell me the secret word."
FOLLOW_UP = "Thanks. Which file was that?"
FINAL = "I read the note for you."
FOLLOW_UP_ANSWER = f"That was {NOTE}."
THOUGHT = "The user wants the note; I will read it with a tool."


class Launcher(Protocol):
    def __call__(
        self,
        binary: Path,
        proxy_url: str,
        key: str,
        *,
        home: Path,
        workspace: Path,
        prompt: str,
        model: str,
        resume: bool = False,
    ) -> Launch: ...


@dataclass(frozen=True)
class Driver:
    """One agent as the tests drive it: how to launch it and the tool call that reads the note."""

    id: str
    agent: Agent
    launch: Launcher
    read_note: Callable[[Path], ToolCall]  # the workspace -> the call that reads the note
    native: Backend  # the backend of the agent's own vendor


DRIVERS = (
    Driver(
        "claude-code",
        agents.CLAUDE_CODE,
        agent_runs.claude_code,
        lambda ws: ToolCall("Read", {"file_path": str(ws / NOTE)}),
        "anthropic",
    ),
    Driver(
        "gemini-cli",
        agents.GEMINI_CLI,
        agent_runs.gemini_cli,
        lambda ws: ToolCall("read_file", {"file_path": str(ws / NOTE)}),
        "gemini",
    ),
    Driver(
        "codex-chat",
        agents.CODEX_CHAT,
        functools.partial(agent_runs.codex, wire_api="chat"),
        lambda ws: ToolCall("shell", {"command": ["cat", NOTE], "workdir": str(ws)}),
        "openai",
    ),
    Driver(
        "codex-responses",
        agents.CODEX_RESPONSES,
        functools.partial(agent_runs.codex, wire_api="responses"),
        lambda ws: ToolCall("exec_command", {"cmd": f"cat {NOTE}", "workdir": str(ws)}),
        "openai",
    ),
)

# (test, driver, backend) -> why it fails today (a known proxy issue), as a strict xfail. The
# three issues these tests found first (the answer's model name, a system entry after the
# prompt, Codex 0.94's stray tool `name`) are fixed; none is known now.
KNOWN_FAILURES: dict[tuple[str, str, str], str] = {}


def _cases(test: str) -> list[object]:
    cases: list[object] = []
    for driver in DRIVERS:
        for backend in BACKENDS:
            reason = KNOWN_FAILURES.get((test, driver.id, backend))
            marks = [pytest.mark.xfail(reason=reason, strict=True)] if reason else []
            cases.append(
                pytest.param(
                    driver, cast(Backend, backend), marks=marks, id=f"{driver.id}-{backend}"
                )
            )
    return cases


# ------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def agent_binaries(request: pytest.FixtureRequest) -> Iterator[Callable[[Agent], Path]]:
    """Each agent's command, installed on first use (skipped when npm cannot be reached)."""
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    found: dict[Agent, Path] = {}
    unavailable: dict[Agent, str] = {}

    def progress(line: str) -> None:
        if reporter is not None:
            reporter.write_line(f"[agents] {line}")

    def binary(agent: Agent) -> Path:
        if agent in unavailable:
            pytest.skip(unavailable[agent])
        if agent not in found:
            try:
                found[agent] = agents.install(agent, progress=progress)
            except agents.AgentUnavailable as reason:
                unavailable[agent] = str(reason)
                pytest.skip(str(reason))
        return found[agent]

    yield binary


@dataclass
class Task:
    """A workspace holding a note with a fresh secret word, and a private HOME."""

    workspace: Path
    home: Path
    word: str


@pytest.fixture
def task(tmp_path: Path) -> Task:
    word = f"pineapple-{secrets.token_hex(4)}"
    workspace = tmp_path / "workspace"
    workspace.mkdir()
    (workspace / NOTE).write_text(f"the secret word is {word}\n")
    home = tmp_path / "home"
    home.mkdir()
    return Task(workspace, home, word)


# ------------------------------------------------------------------------------- helpers


def model_of(backend: Backend) -> str:
    return f"{backend}:{MODELS[backend]}"


def script_tool_round(upstream: Upstream, driver: Driver, task: Task, backend: Backend) -> None:
    """`backend` asks for the note while no tool result is in the conversation (thinking first,
    as a thinking model does), then answers FINAL."""
    call = driver.read_note(task.workspace)

    def wants_the_note(record: RecordedRequest) -> bool:
        declared = call.name in conversation.tool_names(record)
        return declared and not conversation.tool_results(record)

    upstream.when(Reply(thinking=THOUGHT, tool_calls=[call]), backend=backend, match=wants_the_note)
    upstream.when(Reply(text=FINAL), backend=backend)


def run_agent(
    driver: Driver,
    binary: Path,
    proxy: ProxyProcess,
    task: Task,
    prompt: str,
    model: str,
    *,
    resume: bool = False,
) -> Run:
    launch = driver.launch(
        binary,
        proxy.url,
        PROXY_KEY,
        home=task.home,
        workspace=task.workspace,
        prompt=prompt,
        model=model,
        resume=resume,
    )
    return agent_runs.run(launch, AGENT_TIMEOUT)


def posts(upstream: Upstream) -> list[RecordedRequest]:
    """The model calls the upstream saw (the proxy's own model-list refreshes left out)."""
    return [record for record in upstream.requests if record.method == "POST"]


def explain(run: Run, upstream: Upstream, proxy: ProxyProcess) -> str:
    seen = "\n".join(
        f"  {r.method} {r.path} -> {r.status} {r.error or ''}" for r in upstream.requests
    )
    return f"{run.describe()}\n--- upstream\n{seen}\n--- proxy log\n{proxy.log()[-3000:]}"


def assert_answered(
    run: Run, upstream: Upstream, proxy: ProxyProcess, text: str, backend: Backend
) -> list[RecordedRequest]:
    """The agent ended well printing `text`, and every model call went to `backend`'s model."""
    why = explain(run, upstream, proxy)
    assert not run.timed_out, why
    assert run.returncode == 0, why
    assert text in run.stdout, why
    calls = posts(upstream)
    assert calls, why
    assert {(r.backend, r.model) for r in calls} == {(backend, MODELS[backend])}, why
    assert all(r.status == 200 for r in calls), why
    return calls


def carried_the_note(calls: list[RecordedRequest], task: Task) -> bool:
    """Some call carried the note's content back as a tool result."""
    return any(task.word in text for r in calls for text in conversation.tool_results(r))


def user_texts(calls: list[RecordedRequest]) -> list[str]:
    return [text for r in calls for text in conversation.user_texts(r)]


def reroute_source(driver: Driver, target: Backend) -> Backend:
    """The backend the agent is pointed at before the command: its own, or another one."""
    if driver.native != target:
        return driver.native
    return "anthropic" if target == "openai" else "openai"


def resume_source(target: Backend) -> Backend:
    """Where a resumed conversation began: the backend after `target` in BACKENDS (so the four
    resume cases cross four different pairs, none the reroute test's native -> target)."""
    return cast(Backend, BACKENDS[(BACKENDS.index(target) + 1) % len(BACKENDS)])


# ------------------------------------------------------------------------------- tests


@pytest.mark.parametrize(("driver", "backend"), _cases("tool"))
def test_agent_reads_a_file_through_each_backend(
    driver: Driver,
    backend: Backend,
    agent_binaries: Callable[[Agent], Path],
    proxy: ProxyProcess,
    upstream: Upstream,
    task: Task,
) -> None:
    binary = agent_binaries(driver.agent)
    script_tool_round(upstream, driver, task, backend)
    run = run_agent(driver, binary, proxy, task, ASK, model_of(backend))
    calls = assert_answered(run, upstream, proxy, FINAL, backend)
    assert len(calls) >= 2, explain(run, upstream, proxy)  # asked for the tool, got its result
    assert carried_the_note(calls, task), explain(run, upstream, proxy)


@pytest.mark.parametrize(("driver", "target"), _cases("reroute"))
def test_set_model_at_the_start_of_the_prompt_reroutes_the_agent(
    driver: Driver,
    target: Backend,
    agent_binaries: Callable[[Agent], Path],
    proxy: ProxyProcess,
    upstream: Upstream,
    task: Task,
) -> None:
    binary = agent_binaries(driver.agent)
    script_tool_round(upstream, driver, task, target)
    prompt = f"!/set(model={model_of(target)}) {ASK}"
    run = run_agent(driver, binary, proxy, task, prompt, model_of(reroute_source(driver, target)))
    calls = assert_answered(run, upstream, proxy, FINAL, target)
    assert carried_the_note(calls, task), explain(run, upstream, proxy)
    texts = user_texts(calls)
    assert any(ASK in text for text in texts), explain(run, upstream, proxy)
    assert not any("!/set" in text for text in texts), explain(run, upstream, proxy)


@pytest.mark.parametrize(("driver", "target"), _cases("resume"))
def test_set_model_reroutes_a_resumed_conversation(
    driver: Driver,
    target: Backend,
    agent_binaries: Callable[[Agent], Path],
    proxy: ProxyProcess,
    upstream: Upstream,
    task: Task,
) -> None:
    """A first run reads the note on one backend; the conversation, resumed with the command,
    goes on at `target` with the whole history (tool call and result) converted to it."""
    binary = agent_binaries(driver.agent)
    source = resume_source(target)
    script_tool_round(upstream, driver, task, source)
    first = run_agent(driver, binary, proxy, task, ASK, model_of(source))
    assert_answered(first, upstream, proxy, FINAL, source)

    upstream.reset()
    upstream.when(Reply(text=FOLLOW_UP_ANSWER), backend=target)
    prompt = f"!/set(model={model_of(target)}) {FOLLOW_UP}"
    second = run_agent(driver, binary, proxy, task, prompt, model_of(source), resume=True)
    calls = assert_answered(second, upstream, proxy, FOLLOW_UP_ANSWER, target)
    why = explain(second, upstream, proxy)
    assert carried_the_note(calls, task), why  # the earlier tool result, now in target's format
    texts = user_texts(calls)
    assert any(ASK in text for text in texts) and any(FOLLOW_UP in text for text in texts), why
    assert not any("!/set" in text for text in texts), why

"""The Gemini CLI backend: prompt rendering, flavour detection, and runs of a fake `gemini`.

The fake (`tests/fake_gemini_cli/gemini`) is copied into a temporary bin directory put first on
the runner's PATH; it logs what it got (argv, env, cwd, stdin, pids) to FAKE_CLI_LOG.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from protocol import tokens
from protocol.canonical import (
    BlockStop,
    ChatRequest,
    Error,
    Event,
    Finish,
    ImagePart,
    Message,
    Start,
    TextDelta,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from protocol.gemini_cli import (
    CliNotFound,
    GeminiCliRunner,
    child_env,
    detect,
    render_prompt,
    session_dir_name,
)
from protocol.gemini_cli_output import CliOutputDecoder, scrub, usage_from_stats

FAKE = Path(__file__).resolve().parents[1] / "fake_gemini_cli" / "gemini"
REPLY = "Hello from the fake gemini CLI."
PROXY_KEY = "proxy-secret-value-123456"
GEMINI_KEY = "AIzaSyFAKEFAKEFAKEFAKEFAKEFAKEFAKE123"


# -- helpers ------------------------------------------------------------------------------------


class Cli:
    """A fake CLI installation in a temp dir and the proxy environment around it."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.bin = root / "bin"
        self.bin.mkdir()
        shutil.copy2(FAKE, self.bin / "gemini")
        self.home = root / "home"
        self.home.mkdir()
        self.log = root / "cli.log"
        self.work = root / "work"

    def env(self, **fake: str) -> dict[str, str]:
        return {
            "PATH": f"{self.bin}{os.pathsep}{os.environ.get('PATH', os.defpath)}",
            "HOME": str(self.home),
            "FAKE_CLI_LOG": str(self.log),
            "GOOGLE_CLOUD_PROJECT": "my-project",
            "GEMINI_API_KEY": GEMINI_KEY,
            "GEMINI_API_KEY_2": GEMINI_KEY + "2",
            "OPENAI_API_KEY": "sk-proxyopenaikey1234567890",
            "LLM_INTERACTIVE_PROXY_API_KEY": PROXY_KEY,
            "AWS_SECRET_ACCESS_KEY": "aws-secret-value-1234567890",
            **fake,
        }

    def runner(self, timeout: float = 10.0, max_processes: int = 2, **fake: str) -> GeminiCliRunner:
        env = self.env(**fake)
        allow = ["FAKE_CLI_LOG", *fake]
        return GeminiCliRunner(
            max_processes=max_processes,
            timeout=timeout,
            workdir_root=self.work,
            env=env,
            env_allowlist=allow,
            kill_grace=0.3,
        )

    def records(self) -> list[dict[str, Any]]:
        if not self.log.exists():
            return []
        return [json.loads(line) for line in self.log.read_text().splitlines() if line]

    def runs(self) -> list[dict[str, Any]]:
        return [r for r in self.records() if "argv" in r]

    def grandchildren(self) -> list[int]:
        return [r["grandchild"] for r in self.records() if "grandchild" in r]


@pytest.fixture
def cli(tmp_path: Path) -> Cli:
    return Cli(tmp_path)


def user(text: str, model: str = "gemini-2.5-flash") -> ChatRequest:
    return ChatRequest(
        source="openai", model=model, messages=[Message(role="user", content=[TextPart(text=text)])]
    )


async def first(events: AsyncIterator[Event]) -> Event:
    return await anext(events)


async def collect(events: AsyncIterator[Event]) -> list[Event]:
    return [event async for event in events]


def text_of(events: list[Event]) -> str:
    return "".join(e.text for e in events if isinstance(e, TextDelta))


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie waiting for its reaper counts as gone)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


async def gone(pid: int, limit: float = 5.0) -> bool:
    """Waits (up to `limit` seconds) for `pid` to end; True when it did."""
    for _ in range(int(limit / 0.02)):
        if not alive(pid):
            return True
        await asyncio.sleep(0.02)
    return not alive(pid)


async def until(check: Any, limit: float = 5.0) -> None:
    for _ in range(int(limit / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not reached")


# -- render_prompt ------------------------------------------------------------------------------


def test_a_lone_user_message_is_passed_as_it_is() -> None:
    assert render_prompt(user("What is 2+2?")) == "What is 2+2?"


def test_the_whole_conversation_is_rendered_in_order_ending_with_the_last_user_message() -> None:
    req = ChatRequest(
        source="anthropic",
        model="m",
        system=[TextPart(text="You are terse.")],
        messages=[
            Message(role="user", content=[TextPart(text="What is in a.txt?")]),
            Message(
                role="assistant",
                content=[
                    ThinkingPart(text="private reasoning"),
                    TextPart(text="Let me look."),
                    ToolCallPart(id="call_1", name="read_file", arguments='{"path": "a.txt"}'),
                ],
            ),
            Message(
                role="tool",
                content=[ToolResultPart(call_id="call_1", content=[TextPart(text="hello")])],
            ),
            Message(
                role="user",
                content=[
                    TextPart(text="And this picture?"),
                    ImagePart(url="https://example.com/cat.png"),
                    ImagePart(data="AAAA", media_type="image/png"),
                ],
            ),
        ],
    )
    prompt = render_prompt(req)
    assert prompt.startswith("The conversation so far follows.")
    order = [
        "SYSTEM:\nYou are terse.",
        "USER:\nWhat is in a.txt?",
        'ASSISTANT:\nLet me look.\n[tool call read_file (id call_1): {"path": "a.txt"}]',
        "TOOL RESULT (read_file, id call_1):\nhello",
        "USER:\nAnd this picture?\n[image: https://example.com/cat.png]\n"
        "[image: image/png, inline data not shown]",
    ]
    positions = [prompt.index(piece) for piece in order]
    assert positions == sorted(positions)
    assert prompt.endswith("[image: image/png, inline data not shown]")
    assert "private reasoning" not in prompt


def test_a_failed_tool_result_says_so() -> None:
    req = ChatRequest(
        source="openai",
        model="m",
        messages=[
            Message(role="user", content=[TextPart(text="go")]),
            Message(
                role="user",
                content=[
                    ToolResultPart(
                        call_id="c9", name="grep", is_error=True, content=[TextPart(text="boom")]
                    ),
                    TextPart(text="what now?"),
                ],
            ),
        ],
    )
    prompt = render_prompt(req)
    assert "TOOL RESULT (grep, id c9, error):\nboom\n\nUSER:\nwhat now?" in prompt


# -- environment and working directory ----------------------------------------------------------


def test_child_env_keeps_only_path_home_and_google_variables_without_keys() -> None:
    env = child_env(
        {
            "PATH": "/bin",
            "HOME": "/home/u",
            "GOOGLE_CLOUD_PROJECT": "p",
            "GOOGLE_APPLICATION_CREDENTIALS": "/creds.json",
            "GEMINI_SANDBOX": "false",
            "GEMINI_API_KEY": "k1",
            "GEMINI_API_KEY_3": "k3",
            "GOOGLE_API_KEY": "k4",
            "OPENAI_API_KEY": "k5",
            "LLM_INTERACTIVE_PROXY_API_KEY": "k6",
            "HTTPS_PROXY": "http://corp:3128",
            "SHELL": "/bin/bash",
        }
    )
    assert env == {
        "PATH": "/bin",
        "HOME": "/home/u",
        "GOOGLE_CLOUD_PROJECT": "p",
        "GOOGLE_APPLICATION_CREDENTIALS": "/creds.json",
        "GEMINI_SANDBOX": "false",
        "GEMINI_CLI_TRUST_WORKSPACE": "true",
        "NO_COLOR": "1",
        "TERM": "dumb",
    }


def test_child_env_allowlist_passes_named_variables_and_user_settings_win() -> None:
    env = child_env(
        {"GEMINI_API_KEY": "k1", "HTTPS_PROXY": "http://corp", "GEMINI_CLI_TRUST_WORKSPACE": "0"},
        allowlist=["GEMINI_API_KEY", "HTTPS_PROXY"],
    )
    assert env["GEMINI_API_KEY"] == "k1"
    assert env["HTTPS_PROXY"] == "http://corp"
    assert env["GEMINI_CLI_TRUST_WORKSPACE"] == "0"


def test_session_dir_names_are_safe_distinct_and_stable() -> None:
    names = [session_dir_name(s) for s in ("../../etc/passwd", "a/b", "a b", "", None, "x" * 300)]
    for name in names:
        assert "/" not in name and not name.startswith(".") and len(name) <= 60
    assert len(set(names[:4])) == 4
    assert session_dir_name("a/b") == session_dir_name("a/b")
    assert session_dir_name("") == session_dir_name(None)


def test_from_env_reads_timeout_and_process_limit(tmp_path: Path) -> None:
    runner = GeminiCliRunner.from_env(
        {"GEMINI_CLI_TIMEOUT": "42.5", "GEMINI_CLI_MAX_PROCESSES": "3"}, workdir_root=tmp_path
    )
    assert (runner.timeout, runner.max_processes) == (42.5, 3)
    default = GeminiCliRunner.from_env({}, workdir_root=tmp_path)
    assert (default.timeout, default.max_processes) == (600.0, 2)
    with pytest.raises(ValueError, match="GEMINI_CLI_TIMEOUT"):
        GeminiCliRunner.from_env({"GEMINI_CLI_TIMEOUT": "soon"})


# -- flavour detection --------------------------------------------------------------------------


async def test_detect_reads_version_and_stream_json_support(cli: Cli) -> None:
    flavor = await detect("gemini", env=cli.env())
    assert flavor.executable == str(cli.bin / "gemini")
    assert flavor.version == "0.61.0"
    assert flavor.stream_json and flavor.skip_trust and flavor.prompt_flag


async def test_detect_recognises_an_old_text_only_cli(cli: Cli) -> None:
    flavor = await detect("gemini", env=cli.env(FAKE_CLI_FLAVOR="text"))
    assert flavor.version == "0.5.0"
    assert not flavor.stream_json and not flavor.skip_trust


async def test_detect_raises_when_the_cli_is_missing(cli: Cli) -> None:
    with pytest.raises(CliNotFound):
        await detect("gemini-not-installed", env=cli.env())


# -- runs ---------------------------------------------------------------------------------------


async def test_a_run_streams_the_answer_with_usage_from_the_cli_stats(cli: Cli) -> None:
    runner = cli.runner()
    events = await collect(runner.run(user("Say hello"), "sess/1"))
    assert isinstance(events[0], Start)
    assert events[0].model == "gemini-2.5-flash"
    assert text_of(events) == REPLY
    assert sum(isinstance(e, TextDelta) for e in events) == len(REPLY.split())
    assert isinstance(events[-2], BlockStop)
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.stop_reason == "end"
    # 1000 in; 6 answer tokens plus the 7 the total has beyond input and output (thoughts)
    assert finish.usage == Usage(
        input_tokens=1000, output_tokens=13, cached_tokens=200, reasoning_tokens=7
    )
    (run,) = cli.runs()
    argv = run["argv"][1:]
    assert argv[argv.index("-m") + 1] == "gemini-2.5-flash"
    assert argv[argv.index("--output-format") + 1] == "stream-json"
    assert "--skip-trust" in argv and "-p" in argv
    assert run["stdin"] == "Say hello"
    assert Path(run["cwd"]) == cli.work / session_dir_name("sess/1")
    assert run["pgid"] == run["pid"]  # a process group of its own
    assert runner.stats.running == 0 and runner.stats.queued == 0


async def test_the_cli_gets_the_whole_conversation_on_stdin(cli: Cli) -> None:
    req = ChatRequest(
        source="openai",
        model="gemini-2.5-pro",
        system=[TextPart(text="Be brief.")],
        messages=[
            Message(role="user", content=[TextPart(text="first question")]),
            Message(role="assistant", content=[TextPart(text="first answer")]),
            Message(role="user", content=[TextPart(text="second question")]),
        ],
    )
    await collect(cli.runner().run(req, "s"))
    (run,) = cli.runs()
    assert run["stdin"] == render_prompt(req)
    assert run["stdin"].endswith("USER:\nsecond question")


async def test_the_cli_environment_holds_no_proxy_secrets(cli: Cli) -> None:
    await collect(cli.runner().run(user("hi"), "s"))
    (run,) = cli.runs()
    env = run["env"]
    assert env["GOOGLE_CLOUD_PROJECT"] == "my-project"
    assert env["HOME"] == str(cli.home)
    for name in ("GEMINI_API_KEY", "GEMINI_API_KEY_2", "OPENAI_API_KEY", "AWS_SECRET_ACCESS_KEY"):
        assert name not in env
    values = set(env.values())
    for secret in (PROXY_KEY, GEMINI_KEY, "sk-proxyopenaikey1234567890"):
        assert secret not in values


async def test_the_first_delta_arrives_while_the_cli_still_runs_and_aclose_kills_the_group(
    cli: Cli,
) -> None:
    runner = cli.runner(FAKE_CLI_MODE="stall")
    events = runner.run(user("hi"), "s")
    assert isinstance(await anext(events), Start)
    first = await anext(events)
    assert isinstance(first, TextDelta) and first.text == "Hello "
    (run,) = cli.runs()
    await until(lambda: cli.grandchildren())
    (grandchild,) = cli.grandchildren()
    assert alive(run["pid"]) and alive(grandchild)
    assert runner.stats.running == 1
    await events.aclose()
    assert await gone(run["pid"])
    assert await gone(grandchild)
    assert runner.stats.running == 0


async def test_cancelling_the_consumer_kills_the_process_group(cli: Cli) -> None:
    runner = cli.runner(FAKE_CLI_MODE="hang", FAKE_CLI_IGNORE_TERM="1")
    task = asyncio.create_task(collect(runner.run(user("hi"), "s")))
    await until(lambda: cli.grandchildren())
    (run,) = cli.runs()
    (grandchild,) = cli.grandchildren()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await gone(run["pid"])
    assert await gone(grandchild)
    assert runner.stats.running == 0


async def test_the_timeout_kills_the_whole_process_group(cli: Cli) -> None:
    runner = cli.runner(timeout=1.0, FAKE_CLI_MODE="hang", FAKE_CLI_IGNORE_TERM="1")
    events = await collect(runner.run(user("hi"), "s"))
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, Error) and error.status == 504 and error.kind == "timeout"
    assert "GEMINI_CLI_TIMEOUT" in error.message
    (run,) = cli.runs()
    (grandchild,) = cli.grandchildren()
    assert await gone(run["pid"])
    assert await gone(grandchild)


async def test_at_most_max_processes_run_and_the_rest_wait_in_line(cli: Cli) -> None:
    runner = cli.runner(max_processes=2, FAKE_CLI_MODE="stall")
    a, b, c = (runner.run(user("hi"), f"s{i}") for i in range(3))
    assert isinstance(await anext(a), Start)
    assert isinstance(await anext(b), Start)
    third = asyncio.create_task(first(c))
    await until(lambda: runner.stats.queued == 1)
    assert runner.stats.running == 2
    assert len(cli.runs()) == 2  # the third CLI process was not started
    assert not third.done()
    await a.aclose()
    assert isinstance(await third, Start)
    assert runner.stats.running == 2 and runner.stats.queued == 0
    assert len(cli.runs()) == 3
    await b.aclose()
    await c.aclose()
    assert runner.stats.running == 0


async def test_a_cli_that_is_not_logged_in_gives_401(cli: Cli) -> None:
    events = await collect(cli.runner(FAKE_CLI_MODE="noauth").run(user("hi"), "s"))
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, Error) and error.status == 401 and error.kind == "authentication"
    assert "not logged in" in error.message
    assert "Please set an Auth method" in error.message


async def test_a_cli_waiting_for_a_browser_login_is_stopped_with_401(cli: Cli) -> None:
    runner = cli.runner(timeout=60.0, FAKE_CLI_MODE="consent")
    events = await collect(runner.run(user("hi"), "s"))
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, Error) and error.status == 401
    (run,) = cli.runs()
    assert await gone(run["pid"])


async def test_a_failing_cli_gives_502_with_its_last_stderr_lines_scrubbed(cli: Cli) -> None:
    stderr = f"starting\nquota project ok\nboom: upstream broke (key={GEMINI_KEY}) {PROXY_KEY}"
    runner = cli.runner(FAKE_CLI_MODE="fail", FAKE_CLI_EXIT="7", FAKE_CLI_STDERR=stderr)
    events = await collect(runner.run(user("hi"), "s"))
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, Error) and error.status == 502
    assert "exit code 7" in error.message
    assert "boom: upstream broke" in error.message
    assert GEMINI_KEY not in error.message and PROXY_KEY not in error.message


async def test_quota_errors_give_429(cli: Cli) -> None:
    events = await collect(cli.runner(FAKE_CLI_MODE="quota").run(user("hi"), "s"))
    assert [type(e) for e in events] == [Error]
    assert isinstance(events[0], Error) and events[0].status == 429


async def test_a_result_line_with_an_error_ends_the_stream_with_an_error(cli: Cli) -> None:
    events = await collect(cli.runner(FAKE_CLI_MODE="resulterror").run(user("hi"), "s"))
    assert isinstance(events[0], Start)
    assert text_of(events) == "Hello "
    error = events[-1]
    assert isinstance(error, Error) and error.status == 502
    assert "Invalid stream from the model" in error.message


async def test_a_missing_cli_gives_503(cli: Cli) -> None:
    runner = GeminiCliRunner(
        executable="gemini-not-installed", workdir_root=cli.work, env=cli.env()
    )
    events = await collect(runner.run(user("hi"), "s"))
    assert len(events) == 1
    error = events[0]
    assert isinstance(error, Error) and error.status == 503
    assert "gemini CLI not found on PATH" in error.message
    assert runner.stats.running == 0


async def test_a_model_name_that_looks_like_a_flag_is_refused(cli: Cli) -> None:
    events = await collect(cli.runner().run(user("hi", model="--yolo"), "s"))
    assert len(events) == 1
    assert isinstance(events[0], Error) and events[0].status == 400
    assert cli.runs() == []


async def test_without_stats_the_usage_is_counted_offline(cli: Cli) -> None:
    events = await collect(cli.runner(FAKE_CLI_NO_STATS="1").run(user("Say hello"), "s"))
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.usage is not None
    assert finish.usage.input_tokens == tokens.count_text("Say hello", "gemini-2.5-flash")
    assert finish.usage.output_tokens == tokens.count_text(REPLY, "gemini-2.5-flash")


async def test_an_old_cli_without_stream_json_streams_plain_text(cli: Cli) -> None:
    runner = cli.runner(FAKE_CLI_FLAVOR="text")
    events = await collect(runner.run(user("Say hello"), "s"))
    assert isinstance(events[0], Start)
    assert text_of(events) == REPLY + "\n"
    finish = events[-1]
    assert isinstance(finish, Finish) and finish.usage is not None
    assert finish.usage.output_tokens == tokens.count_text(REPLY + "\n", "gemini-2.5-flash")
    (run,) = cli.runs()
    assert "--output-format" not in run["argv"] and "--skip-trust" not in run["argv"]


# -- stdout decoding ----------------------------------------------------------------------------


def _lines(*records: dict[str, Any]) -> bytes:
    return b"".join(json.dumps(r).encode() + b"\n" for r in records)


STREAM = _lines(
    {"type": "init", "session_id": "x", "model": "gemini-2.5-pro"},
    {"type": "message", "role": "user", "content": "question"},
    {"type": "message", "role": "assistant", "content": "Let me check", "delta": True},
    {"type": "tool_use", "tool_name": "read_file", "tool_id": "t1", "parameters": {}},
    {"type": "tool_result", "tool_id": "t1", "status": "success", "output": "data"},
    {"type": "error", "severity": "warning", "message": "Loop detected"},
    {"type": "message", "role": "assistant", "content": "It says ☃.", "delta": True},
    {"type": "result", "status": "success", "stats": {"input_tokens": 5, "output_tokens": 3}},
)


def test_stdout_split_anywhere_decodes_to_the_same_events() -> None:
    whole = CliOutputDecoder(stream_json=True, model="m", response_id="r")
    expected = whole.feed(STREAM) + whole.close()
    bytewise = CliOutputDecoder(stream_json=True, model="m", response_id="r")
    events: list[Event] = []
    for i in range(len(STREAM)):
        events += bytewise.feed(STREAM[i : i + 1])
    events += bytewise.close()
    assert events == expected
    assert events[0] == Start(id="r", model="gemini-2.5-pro")
    # the turns around the CLI's own tool use are kept apart
    assert text_of(events) == "Let me check\n\nIt says ☃."
    assert bytewise.result is not None and bytewise.result.ok
    assert bytewise.result.usage == Usage(input_tokens=5, output_tokens=3)


def test_a_login_prompt_without_a_newline_is_recognised() -> None:
    decoder = CliOutputDecoder(stream_json=True, model="m", response_id="r")
    assert decoder.feed(b"\nOpening authentication page in your browser. ") == []
    decoder.feed(b"Do you want to continue? [Y/n]: ")
    assert decoder.login_prompt and decoder.done


def test_usage_from_session_metrics_stats() -> None:
    stats = {
        "models": {
            "gemini-2.5-pro": {"tokens": {"prompt": 10, "candidates": 4, "thoughts": 6}},
            "gemini-2.5-flash": {"tokens": {"prompt": 2, "candidates": 1, "cached": 1}},
        }
    }
    assert usage_from_stats(stats) == Usage(
        input_tokens=12, output_tokens=11, cached_tokens=1, reasoning_tokens=6
    )
    assert usage_from_stats({"duration_ms": 3}) is None


def test_scrub_removes_key_shapes_and_given_values() -> None:
    text = (
        "key=AIzaSyABCDEFGHIJKLMNOPQRSTUVWXYZ012345 token ya29.a0AfH6SMBxyz "
        "Authorization: Bearer abcdefghijklmnop1234 my-own-secret-value ok"
    )
    cleaned = scrub(text, secrets=["my-own-secret-value"])
    for secret in ("AIzaSy", "ya29.", "abcdefghijklmnop1234", "my-own-secret-value"):
        assert secret not in cleaned
    assert cleaned.endswith("ok") and cleaned.startswith("key=")

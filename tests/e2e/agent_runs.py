"""Running each real agent, unmodified, in its non-interactive mode against the proxy.

One function per agent builds a `Launch` (command, environment, working folder, and the
config files the agent reads, written into a throwaway HOME): Claude Code (`claude -p`),
Gemini CLI (`gemini -p`), Codex (`codex exec`, chat completions or Responses API). `run`
starts it in its own process group, kills the whole group when the timeout passes (a hang is
reported as a timeout, not waited out) and returns what it printed.

Nothing is meant to leave 127.0.0.1: proxy variables are emptied with `NO_PROXY=*`, each
agent's update checks, telemetry and error reporting are switched off by its own variables
and settings, and the only URL an agent is given is the proxy's.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

# No proxy for anything, and no inherited proxy either.
OFFLINE_ENV: dict[str, str] = {
    "HTTPS_PROXY": "",
    "HTTP_PROXY": "",
    "ALL_PROXY": "",
    "https_proxy": "",
    "http_proxy": "",
    "all_proxy": "",
    "NO_PROXY": "*",
    "no_proxy": "*",
}
_KEPT = ("PATH", "LANG", "LC_ALL", "TMPDIR", "USER", "LOGNAME", "SHELL")


@dataclass(frozen=True, slots=True)
class Launch:
    """How to start one agent: the command, its whole environment and where to run it."""

    argv: list[str]
    env: dict[str, str]
    cwd: Path
    files: dict[Path, str] = field(default_factory=dict)  # config files written before the run


@dataclass(frozen=True, slots=True)
class Run:
    """What an agent run produced; `returncode` is None when it was killed at the timeout."""

    returncode: int | None
    stdout: str
    stderr: str
    seconds: float

    @property
    def timed_out(self) -> bool:
        return self.returncode is None

    def describe(self) -> str:
        status = "timed out" if self.timed_out else f"exit {self.returncode}"
        return (
            f"agent {status} after {self.seconds:.1f} s\n--- stdout\n{self.stdout[-3000:]}"
            f"\n--- stderr\n{self.stderr[-3000:]}"
        )


def base_env(home: Path) -> dict[str, str]:
    """A clean environment: a private HOME, no proxies, no inherited API keys."""
    env = {name: os.environ[name] for name in _KEPT if name in os.environ}
    env.update(OFFLINE_ENV)
    env.update(
        {
            "HOME": str(home),
            "XDG_CONFIG_HOME": str(home / ".config"),
            "XDG_CACHE_HOME": str(home / ".cache"),
            "XDG_DATA_HOME": str(home / ".local" / "share"),
            "TERM": "dumb",
            "NO_COLOR": "1",
            "CI": "1",
        }
    )
    return env


def claude_code(
    binary: Path,
    proxy_url: str,
    key: str,
    *,
    home: Path,
    workspace: Path,
    prompt: str,
    model: str,
    resume: bool = False,
) -> Launch:
    """`claude -p PROMPT --model MODEL` with its Anthropic base URL set to the proxy.

    `resume` continues the workspace's latest conversation (`-c`).
    """
    env = base_env(home)
    env.update(
        {
            "ANTHROPIC_BASE_URL": f"{proxy_url}/anthropic",
            "ANTHROPIC_API_KEY": key,
            "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
            "DISABLE_AUTOUPDATER": "1",
            "DISABLE_TELEMETRY": "1",
            "DISABLE_ERROR_REPORTING": "1",
            "DISABLE_BUG_COMMAND": "1",
            "CLAUDE_CONFIG_DIR": str(home / ".claude"),
        }
    )
    argv = [str(binary), *(["-c"] if resume else []), "-p", prompt, "--model", model]
    return Launch(argv, env, workspace)


GEMINI_SETTINGS: dict[str, object] = {
    "security": {"auth": {"selectedType": "gemini-api-key"}},
    "privacy": {"usageStatisticsEnabled": False},
    "telemetry": {"enabled": False},
    "general": {"enableAutoUpdate": False, "enableAutoUpdateNotification": False},
}


def gemini_cli(
    binary: Path,
    proxy_url: str,
    key: str,
    *,
    home: Path,
    workspace: Path,
    prompt: str,
    model: str,
    resume: bool = False,
) -> Launch:
    """`gemini -p PROMPT -m MODEL` with its Gemini base URL set to the proxy.

    `resume` continues the workspace's latest session (`--resume latest`).
    """
    env = base_env(home)
    env.update(
        {
            "GOOGLE_GEMINI_BASE_URL": proxy_url,
            "GEMINI_API_KEY": key,
            "GEMINI_CLI_TRUST_WORKSPACE": "true",
            "GEMINI_TELEMETRY_ENABLED": "false",
        }
    )
    settings = home / ".gemini" / "settings.json"
    argv = [str(binary), *(["--resume", "latest"] if resume else []), "-p", prompt, "-m", model]
    return Launch(argv, env, workspace, {settings: json.dumps(GEMINI_SETTINGS, indent=2)})


CODEX_KEY_VARIABLE = "LLM_PROXY_KEY"


def codex_config(proxy_url: str, wire_api: Literal["chat", "responses"]) -> str:
    """`$CODEX_HOME/config.toml`: one custom provider, the proxy, speaking `wire_api`."""
    return "\n".join(
        [
            'model_provider = "llm-proxy"',
            "check_for_update_on_startup = false",
            "",
            "[model_providers.llm-proxy]",
            'name = "llm-interactive-proxy"',
            f'base_url = "{proxy_url}/v1"',
            f'env_key = "{CODEX_KEY_VARIABLE}"',
            f'wire_api = "{wire_api}"',
            "",
            "[features]",
            "remote_models = false",
            "plugins = false",  # 0.169 syncs plugin lists from api.github.com and chatgpt.com
            "",
            "[analytics]",
            "enabled = false",
            "",
        ]
    )


def codex(
    binary: Path,
    proxy_url: str,
    key: str,
    *,
    home: Path,
    workspace: Path,
    prompt: str,
    model: str,
    wire_api: Literal["chat", "responses"],
    resume: bool = False,
) -> Launch:
    """`codex exec --skip-git-repo-check -m MODEL PROMPT` through a provider that is the proxy.

    `resume` continues the latest session (`codex exec resume --last ...`).
    """
    env = base_env(home)
    codex_home = home / ".codex"
    env.update({"CODEX_HOME": str(codex_home), CODEX_KEY_VARIABLE: key})
    command = ["exec", "resume", "--last"] if resume else ["exec"]
    argv = [str(binary), *command, "--skip-git-repo-check", "-m", model, prompt]
    return Launch(
        argv, env, workspace, {codex_home / "config.toml": codex_config(proxy_url, wire_api)}
    )


def run(launch: Launch, timeout: float) -> Run:
    """Run `launch` to its end or until `timeout` seconds (then its process group is killed)."""
    for path, text in launch.files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    launch.cwd.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    process = subprocess.Popen(
        launch.argv,
        cwd=launch.cwd,
        env=launch.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    returncode: int | None
    try:
        stdout, stderr = process.communicate(timeout=timeout)
        returncode = process.returncode
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        returncode = None
    else:
        # children the agent left behind (shell tools, relaunched workers) go with it
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
    return Run(returncode, stdout, stderr, time.monotonic() - started)

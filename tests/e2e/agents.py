"""Installing and locating the real coding agents the agent tests drive (npm packages, pinned).

Each `Agent` is an npm package at one version, installed once with
`npm install --prefix <cache>/<name>-<version> <package>@<version>` under the cache folder
(`$LLM_PROXY_AGENTS_CACHE`, default `~/.cache/llm-interactive-proxy/agents`) and reused by
every later run. A file lock per agent keeps parallel runs (xdist workers, two checkouts)
from installing the same one at once; an install goes to a scratch folder that is renamed
into place only once it is complete, so a broken install never looks installed.
`AgentUnavailable` is raised only when npm itself is missing or its registry is unreachable;
any other install failure is an error.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

INSTALL_TIMEOUT = 900.0  # seconds; the first install of all agents downloads about 1 GB
PROBE_TIMEOUT = 30.0


@dataclass(frozen=True, slots=True)
class Agent:
    """One pinned npm release of an agent and the command it installs."""

    name: str  # the cache folder's stem, e.g. "claude-code"
    package: str  # the npm package
    version: str
    binary: str  # the command in node_modules/.bin

    @property
    def spec(self) -> str:
        return f"{self.package}@{self.version}"

    @property
    def label(self) -> str:
        return f"{self.name}-{self.version}"


CLAUDE_CODE = Agent("claude-code", "@anthropic-ai/claude-code", "2.1.197", "claude")
GEMINI_CLI = Agent("gemini-cli", "@google/gemini-cli", "0.61.0", "gemini")
CODEX_CHAT = Agent("codex", "@openai/codex", "0.94.0", "codex")  # the last chat-completions one
CODEX_RESPONSES = Agent("codex", "@openai/codex", "0.169.0", "codex")  # Responses API only


class AgentUnavailable(Exception):
    """The agent cannot be installed here because npm or its registry cannot be reached."""


def cache_root() -> Path:
    configured = os.environ.get("LLM_PROXY_AGENTS_CACHE")
    if configured:
        return Path(configured).expanduser()
    return Path.home() / ".cache" / "llm-interactive-proxy" / "agents"


def binary_path(agent: Agent, root: Path | None = None) -> Path:
    """Where `agent`'s command is once installed (it may not be yet)."""
    return (root or cache_root()) / agent.label / "node_modules" / ".bin" / agent.binary


def installed(agent: Agent, root: Path | None = None) -> Path | None:
    """The agent's command when it is installed, else None."""
    path = binary_path(agent, root)
    return path if path.is_file() and os.access(path, os.X_OK) else None


@contextmanager
def _locked(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _npm() -> str:
    npm = shutil.which("npm")
    if npm is None:
        raise AgentUnavailable("npm is not on PATH: cannot install the agents")
    return npm


# npm's error codes for a registry it cannot reach (anything else, such as E404, is an error)
_NETWORK_ERRORS = frozenset(
    {
        "ECONNREFUSED",
        "ECONNRESET",
        "ENOTFOUND",
        "ETIMEDOUT",
        "EAI_AGAIN",
        "ENETUNREACH",
        "EHOSTUNREACH",
        "ECONNABORTED",
        "UNABLE_TO_GET_ISSUER_CERT_LOCALLY",
        "SELF_SIGNED_CERT_IN_CHAIN",
    }
)
_registry_down: list[str] = []  # why the registry was found unreachable (asked once a run)


def _probe_registry(npm: str, agent: Agent) -> None:
    """AgentUnavailable unless the registry answers for the pinned release."""
    if _registry_down:
        raise AgentUnavailable(_registry_down[0])
    try:
        probe = subprocess.run(
            [npm, "view", "--fetch-retries=0", agent.spec, "version"],
            capture_output=True,
            text=True,
            timeout=PROBE_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        _registry_down.append(f"the npm registry did not answer within {PROBE_TIMEOUT:.0f} s")
        raise AgentUnavailable(_registry_down[0]) from None
    if probe.returncode == 0 and agent.version in probe.stdout:
        return
    errors = [
        line[len("npm error ") :]
        for line in probe.stderr.splitlines()
        if line.startswith("npm error ")
    ]
    code = next((line.split()[-1] for line in errors if line.startswith("code ")), "")
    if code in _NETWORK_ERRORS or any("FetchError" in line for line in errors):
        detail = next((line for line in errors if "FetchError" in line), code)
        _registry_down.append(f"the npm registry is unreachable: {detail}")
        raise AgentUnavailable(_registry_down[0])
    shown = "\n".join(errors[:5]) or probe.stdout.strip() or "no output"
    raise RuntimeError(f"npm view {agent.spec} failed:\n{shown}")


def install(
    agent: Agent,
    root: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> Path:
    """`agent`'s command, installing it into the cache first when needed.

    `progress` hears one line when an install starts and one when it ends (installs take
    minutes). Raises `AgentUnavailable` when npm or its registry is out of reach and
    `RuntimeError` (with npm's last output) when the install itself fails.
    """
    root = root or cache_root()
    found = installed(agent, root)
    if found is not None:
        return found
    with _locked(root / f"{agent.label}.lock"):
        found = installed(agent, root)  # another process may have installed it meanwhile
        if found is not None:
            return found
        npm = _npm()
        _probe_registry(npm, agent)
        say = progress or log.info
        say(f"installing {agent.spec} into {root / agent.label} (once; npm, may take minutes)")
        scratch = Path(tempfile.mkdtemp(prefix=f"{agent.label}.partial-", dir=root))
        try:
            result = subprocess.run(
                [npm, "install", "--prefix", str(scratch), "--no-audit", "--no-fund", agent.spec],
                capture_output=True,
                text=True,
                timeout=INSTALL_TIMEOUT,
                check=False,
            )
            if result.returncode != 0:
                tail = "\n".join((result.stdout + result.stderr).strip().splitlines()[-15:])
                raise RuntimeError(f"npm install {agent.spec} failed:\n{tail}")
            target = root / agent.label
            if target.exists():  # a leftover without a working command
                shutil.rmtree(target)
            scratch.rename(target)
        finally:
            if scratch.exists():
                shutil.rmtree(scratch, ignore_errors=True)
        found = installed(agent, root)
        if found is None:
            raise RuntimeError(f"npm installed {agent.spec} but {agent.binary} is missing")
        say(f"installed {agent.spec}")
        return found

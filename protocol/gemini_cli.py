"""The Gemini CLI backend: runs the user's local, logged-in `gemini` CLI once per request.

`GeminiCliRunner.run(req, session_id)` renders the whole conversation as one prompt
(`protocol.gemini_cli_prompt`), runs the CLI non-interactively in a per-session working
directory, and yields canonical stream events as the CLI prints them
(`protocol.gemini_cli_output` decodes its stdout). Pure asyncio; no mitmproxy.

What the real CLI does (npm `@google/gemini-cli`, 0.61.0 on npm when this was written; read
from google-gemini/gemini-cli `packages/cli/src/{gemini.tsx,nonInteractiveCli.ts,config/*}`,
`packages/core/src/output/*`, `packages/core/src/utils/errors.ts` and docs/cli/headless.md):

- Headless mode: `-p/--prompt TEXT` (newer versions also take a positional prompt and mark `-p`
  deprecated) or a stdin that is not a TTY. When stdin is piped the CLI reads all of it (up to
  8 MB) and runs on `STDIN + "\\n\\n" + PROMPT`. We send the rendered conversation on stdin (no
  argv length limit, nothing visible in `ps`) and `-p " "` only to select headless mode.
- `-m/--model NAME` picks the model. `-o/--output-format text|json|stream-json`; old versions
  have no such flag or only `text|json`, so `detect()` reads `--help` once per executable.
- `stream-json` prints one JSON object per line, each with `type` and `timestamp`:
  `init {session_id, model}`; `message {role: user|assistant, content, delta?}` (the user's
  input echoed once, then assistant text chunks with `delta: true`); `tool_use {tool_name,
  tool_id, parameters}` and `tool_result {tool_id, status, output?, error?}` for the CLI's own
  agent tools; `error {severity: warning|error, message}` (non-fatal); and last `result {status:
  success|error, error?, stats?: {total_tokens, input_tokens, output_tokens, cached, input,
  duration_ms, tool_calls}}`. Fatal errors are printed as text on stderr.
- Exit codes: 0 ok, 1 general or API error, 41 authentication, 42 input, 44 sandbox, 52 config,
  53 turn limit, 54 tool execution, 55 (newer versions) untrusted folder, 130 cancelled.
- Without a usable login it exits 41 with "Please set an Auth method in your ...settings.json or
  specify one of the following environment variables before running: GEMINI_API_KEY,
  GOOGLE_GENAI_USE_VERTEXAI, GOOGLE_GENAI_USE_GCA" (or "GEMINI_API_KEY environment variable not
  found ...", "When using Vertex AI, you must specify ..."); with Login-with-Google selected but
  no cached credentials it asks on stdout "Opening authentication page in your browser. Do you
  want to continue? [Y/n]:" and waits on stdin; Workspace accounts fail with "This account
  requires setting the GOOGLE_CLOUD_PROJECT env var". All of these become a 401 here.
- Newer versions refuse to run headless in an untrusted folder unless given `--skip-trust` or
  `GEMINI_CLI_TRUST_WORKSPACE=true`; we pass both where supported (the folder is our own, empty
  per-session directory, so there is no project configuration in it to distrust).
- The CLI relaunches itself as a child node process, and its shell tool spawns more: the
  runner gives each run its own process group (`start_new_session=True`) and always signals the
  whole group.
- In headless mode without `--yolo` the CLI runs only tools that need no confirmation (reads,
  searches); they work inside the per-session directory.

Limits: at most `max_processes` CLI runs at once (a FIFO queue beyond that, `stats` counts
both); `timeout` seconds from process start (`GEMINI_CLI_TIMEOUT`, default 600), then SIGTERM to
the group and SIGKILL after `kill_grace`; the same when the consumer stops iterating (the client
went away). Errors come out as one `Error` event: 503 CLI not found, 401 not logged in, 429
quota, 404 unknown model, 504 timeout, 502 anything else with the CLI's last stderr lines
(scrubbed of anything key-shaped). Usage comes from the CLI's `result` stats; when it gives none
(text flavour, old versions) both sides are counted with the offline tokenizer.

Child environment rule (`child_env`): only PATH, HOME, and variables starting with `GOOGLE_` or
`GEMINI_`, except any name ending in `_API_KEY` or `_API_KEY_<n>` (that is how the proxy names
its own upstream keys, `GEMINI_API_KEY` among them); plus the names in `env_allowlist`, passed
as they are whatever they are called (for example `GEMINI_API_KEY` when the CLI should use it,
or `HTTPS_PROXY`); plus `GEMINI_CLI_TRUST_WORKSPACE=true`, `NO_COLOR=1` and `TERM=dumb` unless
already set.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import os
import re
import shutil
import signal
import uuid
from collections.abc import AsyncGenerator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from protocol import tokens
from protocol.canonical import BlockStop, ChatRequest, Error, Event, Finish, Start, Usage
from protocol.codec import error_kind
from protocol.gemini_cli_output import CliOutputDecoder, failure_error, scrub
from protocol.gemini_cli_prompt import render_prompt

__all__ = [
    "CliFlavor",
    "CliNotFound",
    "CliStats",
    "GeminiCliRunner",
    "child_env",
    "detect",
    "render_prompt",
    "session_dir_name",
]

logger = logging.getLogger(__name__)

PROMPT_ARG = " "  # `-p` only switches headless mode on; the prompt itself goes on stdin
DEFAULT_TIMEOUT = 600.0
DEFAULT_MAX_PROCESSES = 2
READ_CHUNK = 65536
STDOUT_LINE_LIMIT = 16 * 1024 * 1024
BASE_VARS = ("PATH", "HOME")
ENV_PREFIXES = ("GOOGLE_", "GEMINI_")
NON_INTERACTIVE_ENV = {"GEMINI_CLI_TRUST_WORKSPACE": "true", "NO_COLOR": "1", "TERM": "dumb"}
_KEY_NAME = re.compile(r"_API_KEY(?:_\d+)?$")
_SECRET_NAME = re.compile(r"_API_KEY(?:_\d+)?$|SECRET|TOKEN|PASSWORD")
_MODEL_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/@+\-]{0,127}")
_VERSION = re.compile(r"\d+\.\d+\.\d+[0-9A-Za-z.\-+]*")


class CliNotFound(FileNotFoundError):
    """The CLI executable is not on the PATH the runner gives it."""


def child_env(environ: Mapping[str, str], allowlist: Iterable[str] = ()) -> dict[str, str]:
    """The environment the CLI gets from `environ` (the rule is in the module docstring)."""
    allowed = set(allowlist)
    env: dict[str, str] = {}
    for name, value in environ.items():
        if (
            name in allowed
            or name in BASE_VARS
            or name.startswith(ENV_PREFIXES)
            and not _KEY_NAME.search(name)
        ):
            env[name] = value
    for name, value in NON_INTERACTIVE_ENV.items():
        env.setdefault(name, value)
    return env


def session_dir_name(session_id: str | None) -> str:
    """A safe directory name for a session: its readable characters plus a hash of the id."""
    sid = session_id or ""
    digest = hashlib.sha256(sid.encode("utf-8", "replace")).hexdigest()[:16]
    readable = re.sub(r"[^A-Za-z0-9_\-]+", "-", sid).strip("-.")[:40]
    return f"{readable}-{digest}" if readable else f"session-{digest}"


def _default_workdir_root() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "llm-interactive-proxy" / "gemini-cli"


# -- flavour detection --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CliFlavor:
    """What the installed CLI supports, read once from `--version` and `--help`."""

    executable: str  # the resolved path
    version: str | None = None
    stream_json: bool = False
    skip_trust: bool = False
    prompt_flag: bool = True  # `-p` exists (else the prompt argument is positional)

    def argv(self, model: str) -> list[str]:
        """The command line for one run of `model` (empty: the CLI's default model)."""
        args = [self.executable]
        if self.skip_trust:
            args.append("--skip-trust")
        if model:
            args += ["-m", model]
        if self.stream_json:
            args += ["--output-format", "stream-json"]
        args += ["-p", PROMPT_ARG] if self.prompt_flag else [PROMPT_ARG]
        return args


_FLAVORS: dict[tuple[str, int], CliFlavor] = {}


def resolve_executable(executable: str, env: Mapping[str, str]) -> str:
    """The absolute path of `executable` on `env`'s PATH; CliNotFound when there is none."""
    found = shutil.which(executable, path=env.get("PATH", os.defpath))
    if found is None:
        raise CliNotFound(executable)
    return os.path.abspath(found)


async def detect(
    executable: str = "gemini",
    *,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    timeout: float = 30.0,
) -> CliFlavor:
    """The flavour of `executable`, from `--version` and `--help`, cached per resolved path.

    The cache key includes the file's modification time, so an upgraded CLI is looked at again.
    An inconclusive `--help` (it failed or hung) gives the plain-text flavour and is not cached.
    Raises CliNotFound when the executable is not on PATH.
    """
    env = dict(os.environ if env is None else env)
    path = resolve_executable(executable, env)
    try:
        key = (os.path.realpath(path), os.stat(path).st_mtime_ns)
    except OSError as err:
        raise CliNotFound(executable) from err
    cached = _FLAVORS.get(key)
    if cached is not None:
        return cached
    version_rc, version_out = await _capture([path, "--version"], env, cwd, timeout)
    help_rc, help_out = await _capture([path, "--help"], env, cwd, timeout)
    match = _VERSION.search(version_out) if version_rc == 0 else None
    conclusive = help_rc == 0 and "--" in help_out
    flavor = CliFlavor(
        executable=path,
        version=match.group(0) if match else None,
        stream_json=conclusive and "stream-json" in help_out,
        skip_trust=conclusive and "--skip-trust" in help_out,
        prompt_flag=not conclusive or "--prompt" in help_out,
    )
    if conclusive:
        _FLAVORS[key] = flavor
    logger.info(
        "gemini CLI %s at %s: %s output",
        flavor.version or "(unknown version)",
        path,
        "stream-json" if flavor.stream_json else "plain text",
    )
    return flavor


async def _capture(
    argv: list[str], env: Mapping[str, str], cwd: Path | None, timeout: float
) -> tuple[int | None, str]:
    """Exit code and stdout+stderr of a short command; (None, "") when it fails or hangs."""
    if cwd is not None:
        cwd.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
        )
    except OSError as err:
        if isinstance(err, FileNotFoundError):
            raise CliNotFound(argv[0]) from err
        logger.warning("gemini CLI %s could not start: %s", argv[1], err.strerror)
        return None, ""
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        logger.warning("gemini CLI %s did not answer in %.0f s", argv[1], timeout)
        _signal_group(proc.pid, signal.SIGKILL)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 5.0)
        return None, ""
    finally:
        _signal_group(proc.pid, signal.SIGKILL)  # nothing of it outlives the call
    return proc.returncode, out.decode("utf-8", "replace")


def _signal_group(pgid: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


# -- the runner ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CliStats:
    running: int
    queued: int


class _Tail:
    """The last `limit` bytes written to it (a bounded stderr buffer)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.data = bytearray()

    def add(self, chunk: bytes) -> None:
        self.data += chunk
        excess = len(self.data) - self.limit
        if excess > 0:
            del self.data[:excess]

    def text(self) -> str:
        return self.data.decode("utf-8", "replace")


async def _drain(stream: asyncio.StreamReader | None, tail: _Tail) -> None:
    if stream is None:
        return
    while chunk := await stream.read(4096):
        tail.add(chunk)


async def _feed(stdin: asyncio.StreamWriter | None, data: bytes) -> None:
    if stdin is None:
        return
    try:
        stdin.write(data)
        await stdin.drain()
        stdin.close()
        await stdin.wait_closed()
    except (BrokenPipeError, ConnectionResetError):
        logger.debug("gemini CLI closed its stdin before reading the whole prompt")


class GeminiCliRunner:
    """Runs the Gemini CLI per request, at most `max_processes` at once (see module docstring).

    `env` is the proxy's environment (default `os.environ`); the CLI gets only what
    `child_env(env, env_allowlist)` keeps. `workdir_root` holds one directory per session.
    """

    def __init__(
        self,
        executable: str = "gemini",
        max_processes: int = DEFAULT_MAX_PROCESSES,
        timeout: float = DEFAULT_TIMEOUT,
        workdir_root: Path | None = None,
        env: Mapping[str, str] | None = None,
        env_allowlist: Iterable[str] = (),
        *,
        kill_grace: float = 2.0,
        detect_timeout: float = 30.0,
        stderr_limit: int = 16384,
    ) -> None:
        if max_processes < 1:
            raise ValueError("max_processes must be at least 1")
        if timeout <= 0:
            raise ValueError("timeout must be a positive number of seconds")
        source = os.environ if env is None else env
        self.executable = executable
        self.max_processes = max_processes
        self.timeout = timeout
        self.workdir_root = workdir_root or _default_workdir_root()
        self.kill_grace = kill_grace
        self.detect_timeout = detect_timeout
        self.stderr_limit = stderr_limit
        self.env = child_env(source, env_allowlist)
        self._secrets = tuple(v for k, v in source.items() if _SECRET_NAME.search(k) and v)
        self._slots = asyncio.Semaphore(max_processes)
        self._running = 0
        self._queued = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str], **kwargs: object) -> GeminiCliRunner:
        """A runner configured by `GEMINI_CLI_TIMEOUT` (seconds, default 600) and
        `GEMINI_CLI_MAX_PROCESSES` (default 2) in `env`; `kwargs` override both."""
        options: dict[str, object] = {"env": env}
        raw_timeout = env.get("GEMINI_CLI_TIMEOUT", "").strip()
        if raw_timeout:
            try:
                options["timeout"] = float(raw_timeout)
            except ValueError:
                raise ValueError(f"GEMINI_CLI_TIMEOUT: '{raw_timeout}' is not seconds") from None
        raw_max = env.get("GEMINI_CLI_MAX_PROCESSES", "").strip()
        if raw_max:
            try:
                options["max_processes"] = int(raw_max)
            except ValueError:
                raise ValueError(f"GEMINI_CLI_MAX_PROCESSES: '{raw_max}' is not a number") from None
        options.update(kwargs)
        return cls(**options)  # type: ignore[arg-type]

    @property
    def stats(self) -> CliStats:
        """CLI processes running now and requests waiting for a slot."""
        return CliStats(running=self._running, queued=self._queued)

    def workdir(self, session_id: str | None) -> Path:
        """The session's working directory (created, private to the proxy's user)."""
        self.workdir_root.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.workdir_root / session_dir_name(session_id)
        path.mkdir(exist_ok=True, mode=0o700)
        return path

    async def run(self, req: ChatRequest, session_id: str | None) -> AsyncGenerator[Event, None]:
        """Canonical events of one CLI run for `req`, yielded as the CLI prints them.

        `req.model` is the bare model name the CLI knows (empty: the CLI's default). Stopping
        the iteration early (`aclose()`, cancellation) kills the run's whole process group.
        """
        model = req.model.strip()
        if model and not _MODEL_NAME.fullmatch(model):
            yield _error(400, "the model name is not one the gemini CLI can be given")
            return
        prompt = render_prompt(req)
        self._queued += 1
        try:
            await self._slots.acquire()
        finally:
            self._queued -= 1
        self._running += 1
        proc: asyncio.subprocess.Process | None = None
        helpers: list[asyncio.Task[None]] = []
        finished = False
        try:
            try:
                flavor = await detect(
                    self.executable,
                    env=self.env,
                    cwd=self.workdir_root,
                    timeout=self.detect_timeout,
                )
                proc = await asyncio.create_subprocess_exec(
                    *flavor.argv(model),
                    stdin=asyncio.subprocess.PIPE,
                    stdout=asyncio.subprocess.PIPE,
                    stderr=asyncio.subprocess.PIPE,
                    cwd=self.workdir(session_id),
                    env=self.env,
                    start_new_session=True,
                    limit=STDOUT_LINE_LIMIT,
                )
            except FileNotFoundError:
                yield _error(
                    503,
                    f"gemini CLI not found on PATH ('{self.executable}'): install it with "
                    "`npm install -g @google/gemini-cli` and sign in once by running `gemini`",
                )
                return
            except OSError as err:
                yield _error(503, f"the gemini CLI could not be started: {err.strerror or err}")
                return
            loop = asyncio.get_running_loop()
            deadline = loop.time() + self.timeout
            stderr = _Tail(self.stderr_limit)
            helpers.append(asyncio.create_task(_drain(proc.stderr, stderr)))
            helpers.append(asyncio.create_task(_feed(proc.stdin, prompt.encode("utf-8"))))
            decoder = CliOutputDecoder(
                stream_json=flavor.stream_json,
                model=model or "gemini-cli",
                response_id=f"gemini-cli-{uuid.uuid4().hex}",
            )
            timed_out = False
            assert proc.stdout is not None
            while True:
                remaining = deadline - loop.time()
                try:
                    if remaining <= 0:
                        raise TimeoutError
                    chunk = await asyncio.wait_for(proc.stdout.read(READ_CHUNK), remaining)
                except TimeoutError:
                    timed_out = True
                    break
                for event in decoder.feed(chunk) if chunk else decoder.close():
                    yield event
                if not chunk or decoder.done:
                    break
            result = decoder.result
            if not timed_out and result is None and not decoder.login_prompt:
                # stdout ended without a result line: the exit code says how it went
                try:
                    await asyncio.wait_for(proc.wait(), max(deadline - loop.time(), 0.001))
                except TimeoutError:
                    timed_out = True
            if timed_out:
                await self._terminate(proc)
                yield _error(
                    504,
                    f"the gemini CLI did not finish within {self.timeout:g} s and was stopped "
                    "(GEMINI_CLI_TIMEOUT sets the limit)",
                )
                return
            failed = decoder.login_prompt or (
                proc.returncode != 0 if result is None else not result.ok
            )
            if failed:
                if result is not None:  # its last words on stderr may follow the result line
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(proc.wait(), self.kill_grace)
                await self._terminate(proc)
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(asyncio.shield(helpers[0]), self.kill_grace)
                yield self._failure(proc.returncode, decoder, stderr)
                return
            usage = result.usage if result is not None else None
            if usage is None:
                usage = await asyncio.to_thread(_count, prompt, decoder.text_parts, model)
            if not decoder.started:
                yield Start(id=decoder.response_id, model=decoder.model)
            else:
                yield BlockStop(0)
            finished = True
            yield Finish(stop_reason="end", usage=usage)
        finally:
            try:
                if proc is not None:
                    if finished and proc.returncode is None:
                        # after its result line the CLI only cleans up: let it, briefly
                        with contextlib.suppress(TimeoutError):
                            await asyncio.wait_for(proc.wait(), self.kill_grace)
                    await self._terminate(proc)
            finally:
                if proc is not None:
                    _signal_group(proc.pid, signal.SIGKILL)
                for task in helpers:
                    task.cancel()
                self._running -= 1
                self._slots.release()

    def _failure(self, returncode: int | None, decoder: CliOutputDecoder, stderr: _Tail) -> Error:
        """The one error for a run that ended badly, from all the CLI said."""
        diagnostics = "\n".join([stderr.text(), *decoder.noise])
        if decoder.login_prompt:
            return failure_error(None, diagnostics, self._secrets, login_prompt=True)
        result = decoder.result
        if result is not None:
            detail = "\n".join(filter(None, [result.error, diagnostics]))
            return failure_error(returncode or None, detail, self._secrets)
        return failure_error(returncode, diagnostics, self._secrets)

    async def _terminate(self, proc: asyncio.subprocess.Process) -> None:
        """SIGTERM to the run's process group, SIGKILL after the grace; anything left dies too."""
        if proc.returncode is None:
            _signal_group(proc.pid, signal.SIGTERM)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(proc.wait(), self.kill_grace)
        _signal_group(proc.pid, signal.SIGKILL)
        if proc.returncode is None:
            try:
                await asyncio.wait_for(proc.wait(), self.kill_grace)
            except TimeoutError:
                logger.warning("gemini CLI process %d did not exit after SIGKILL", proc.pid)


def _count(prompt: str, text_parts: list[str], model: str) -> Usage:
    return Usage(
        input_tokens=tokens.count_text(prompt, model),
        output_tokens=tokens.count_text("".join(text_parts), model),
    )


def _error(status: int, message: str) -> Error:
    return Error(message=scrub(message), status=status, kind=error_kind(status))

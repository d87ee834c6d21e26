"""What the Gemini CLI prints, turned into canonical stream events and clear errors.

Owns three things, all pure (no processes here; `protocol.gemini_cli` runs the CLI):

- `CliOutputDecoder`: the CLI's stdout bytes (split anywhere) to `Start` and `TextDelta` events.
  With `--output-format stream-json` stdout is JSON lines (see `protocol.gemini_cli` for the
  event shapes); without it, stdout is the answer's plain text and every chunk is a delta.
  The decoder notes the final `result` line (status, stats as `Usage`, error) and whether the
  CLI stopped to ask for a browser login (it then waits on stdin forever; the runner kills it).
- `failure_error`: a failed run's exit code and its last stderr lines to one `Error` whose
  status says what went wrong: 401 not logged in, 429 quota, 404 unknown model, 502 otherwise.
- `scrub`: removes anything that looks like a key or token from text shown to a client or a log.

Per chunk the decoder does constant work per byte: it scans only the newly arrived bytes for
line ends and parses each line once.
"""

from __future__ import annotations

import codecs
import json
import logging
import re
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from protocol.canonical import Error, Event, Start, TextDelta, Usage
from protocol.codec import error_kind

logger = logging.getLogger(__name__)

# Exit codes of the real CLI (packages/core/src/utils/errors.ts, docs/cli/headless.md).
EXIT_AUTH = 41
EXIT_INPUT = 42
EXIT_CONFIG = 52
EXIT_TURN_LIMIT = 53
EXIT_UNTRUSTED = 55
EXIT_CANCELLED = 130

# Messages the real CLI prints when it has no usable login (validateNonInterActiveAuth.ts,
# config/auth.ts, code_assist/oauth2.ts, utils/authConsent.ts), lower-cased.
AUTH_MARKERS = (
    "please set an auth method",
    "gemini_api_key environment variable not found",
    "when using vertex ai, you must specify",
    "authentication consent could not be obtained",
    "failed to authenticate with user code",
    "failed to login",
    "this account requires setting the google_cloud_project",
    "is enforced, but no authentication is configured",
    "the enforced authentication type is",
    "invalid authentication credentials",
    "unauthenticated",
    "please re-authenticate",
)
# What the CLI prints on stdout when it wants an interactive browser login.
LOGIN_PROMPT_MARKERS = (
    "opening authentication page in your browser",
    "do you want to continue? [y/n]",
    "please visit the following url to authorize the application",
    "enter the authorization code",
)
QUOTA_MARKERS = ("resource_exhausted", "quota exceeded", "rate limit", "status 429", "code: 429")
MODEL_MARKERS = ("model not found", "modelnotfound", "is not found for api version")

LOGIN_HINT = (
    "the gemini CLI is not logged in: run `gemini` once in a terminal as the user the proxy "
    "runs as and sign in (or configure an API key or Vertex AI for the CLI)"
)

_SECRET_SHAPES = re.compile(
    r"AIza[0-9A-Za-z_\-]{20,}"  # Google API keys
    r"|ya29\.[0-9A-Za-z_\-.]+"  # Google OAuth access tokens
    r"|1//[0-9A-Za-z_\-]{20,}"  # Google OAuth refresh tokens
    r"|GOCSPX-[0-9A-Za-z_\-]+"  # OAuth client secrets
    r"|sk-[A-Za-z0-9_\-]{16,}"  # OpenAI / Anthropic style keys
    r"|(?i:bearer)\s+[A-Za-z0-9_\-.=/+]{12,}"
    r"|(?P<label>(?i:api[_-]?key|access_token|refresh_token|client_secret|key)[\"']?\s*[=:]\s*[\"']?)"
    r"[A-Za-z0-9_\-.]{12,}"
)
REDACTED = "(redacted)"
_MAX_LINE = 500
_MAX_PARTIAL_CHECK = 4096


def scrub(text: str, secrets: Iterable[str] = ()) -> str:
    """`text` without the given secret values and without anything shaped like a key."""
    for value in secrets:
        if len(value) >= 8 and value in text:
            text = text.replace(value, REDACTED)
    return _SECRET_SHAPES.sub(_redact, text)


def _redact(match: re.Match[str]) -> str:
    return (match.group("label") or "") + REDACTED


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def usage_from_stats(stats: Any) -> Usage | None:
    """The `result` event's stats as canonical `Usage` (None when it reports no tokens).

    Current CLIs send `{input_tokens, output_tokens, total_tokens, cached, input, ...}` where
    output excludes thoughts; thoughts are what the total has beyond input and output and are
    added to the output (canonical output includes reasoning). Some versions send the session
    metrics instead: `{models: {name: {tokens: {prompt, candidates, thoughts, cached}}}}`.
    """
    if not isinstance(stats, dict):
        return None
    models = stats.get("models")
    if isinstance(models, dict) and _int(stats.get("input_tokens")) is None:
        prompt = candidates = thoughts = cached = 0
        seen = False
        for entry in models.values():
            tokens = entry.get("tokens") if isinstance(entry, dict) else None
            if not isinstance(tokens, dict):
                continue
            seen = True
            prompt += _int(tokens.get("prompt")) or 0
            candidates += _int(tokens.get("candidates")) or 0
            thoughts += _int(tokens.get("thoughts")) or 0
            cached += _int(tokens.get("cached")) or 0
        if not seen:
            return None
        return Usage(
            input_tokens=prompt,
            output_tokens=candidates + thoughts,
            cached_tokens=cached or None,
            reasoning_tokens=thoughts or None,
        )
    inp = _int(stats.get("input_tokens"))
    out = _int(stats.get("output_tokens"))
    if inp is None and out is None:
        return None
    total = _int(stats.get("total_tokens"))
    thoughts = 0
    if total is not None and inp is not None and out is not None:
        thoughts = max(0, total - inp - out)
    return Usage(
        input_tokens=inp,
        output_tokens=(out or 0) + thoughts if out is not None else None,
        cached_tokens=_int(stats.get("cached")) or None,
        reasoning_tokens=thoughts or None,
    )


@dataclass(slots=True)
class CliResult:
    """The CLI's final `result` line: `ok` when its status is success."""

    ok: bool
    usage: Usage | None = None
    error: str | None = None


class CliOutputDecoder:
    """The CLI's stdout to canonical events; see the module docstring.

    `Start` comes just before the first text, so a run that fails before answering yields no
    `Start` at all and its error can still be sent as a plain HTTP error. All text is block 0.
    """

    def __init__(self, *, stream_json: bool, model: str, response_id: str) -> None:
        self.stream_json = stream_json
        self.model = model
        self.response_id = response_id
        self.started = False
        self.result: CliResult | None = None
        self.login_prompt = False
        self.text_parts: list[str] = []
        self.noise: deque[str] = deque(maxlen=20)  # stdout that was not an event, for errors
        self._buf = bytearray()
        self._scan = 0
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._tool_since_text = False
        self._ends_newline = True

    @property
    def done(self) -> bool:
        """True once the final `result` line arrived or the CLI asked for a login."""
        return self.result is not None or self.login_prompt

    def feed(self, data: bytes) -> list[Event]:
        out: list[Event] = []
        if not data or self.done:
            return out
        if not self.stream_json:
            self._plain(self._utf8.decode(data), out)
            return out
        buf = self._buf
        buf += data
        start = 0
        pos = self._scan  # the bytes before it hold no line end: never scanned twice
        while not self.done:
            nl = buf.find(b"\n", pos)
            if nl < 0:
                break
            self._line(bytes(buf[start:nl]), out)
            start = pos = nl + 1
        if start:
            del buf[:start]
        self._scan = len(buf)
        if buf and not self.started and len(buf) <= _MAX_PARTIAL_CHECK and buf[:1] != b"{":
            # a login prompt ends without a newline and then waits for an answer on stdin
            partial = buf.decode("utf-8", "replace")
            if _has_marker(partial, LOGIN_PROMPT_MARKERS):
                self._saw_login_prompt(partial)
        return out

    def close(self) -> list[Event]:
        """The end of stdout: a last line without a newline still counts."""
        out: list[Event] = []
        if self.stream_json:
            if self._buf and not self.done:
                self._line(bytes(self._buf), out)
            self._buf.clear()
            self._scan = 0
        elif not self.done:
            self._plain(self._utf8.decode(b"", final=True), out)
        return out

    # -- plain text ---------------------------------------------------------------------------

    def _plain(self, text: str, out: list[Event]) -> None:
        if not text:
            return
        if not self.started and _has_marker(text, LOGIN_PROMPT_MARKERS):
            self._saw_login_prompt(text)
            return
        self._text(text, out)

    # -- stream-json --------------------------------------------------------------------------

    def _line(self, raw: bytes, out: list[Event]) -> None:
        line = raw.decode("utf-8", "replace").strip()
        if not line:
            return
        event: Any = None
        if line.startswith("{"):
            try:
                event = json.loads(line)
            except ValueError:
                event = None
        if not isinstance(event, dict) or not isinstance(event.get("type"), str):
            self._note(line)
            if not self.started and _has_marker(line, LOGIN_PROMPT_MARKERS):
                self._saw_login_prompt(line)
            return
        kind = event["type"]
        if kind == "message":
            content = event.get("content")
            if event.get("role") == "assistant" and isinstance(content, str) and content:
                self._text(content, out)
        elif kind == "init":
            model = event.get("model")
            if isinstance(model, str) and model:
                self.model = model
        elif kind == "tool_use":
            # the CLI's own agent tools (file reads, searches) run inside the CLI; the client
            # sees only the answer, with a paragraph break between the turns around them
            self._tool_since_text = True
            logger.debug("gemini CLI used its tool %s", event.get("tool_name"))
        elif kind == "tool_result":
            logger.debug("gemini CLI tool result: %s", event.get("status"))
        elif kind == "error":
            message = event.get("message")
            self._note(f"{event.get('severity', 'error')}: {message}")
            logger.info("gemini CLI reported: %s", scrub(str(message))[:_MAX_LINE])
        elif kind == "result":
            self._result(event)
        else:
            logger.debug("gemini CLI event of unknown type %r ignored", kind)

    def _result(self, event: dict[str, Any]) -> None:
        ok = event.get("status", "success") == "success"
        error: str | None = None
        err = event.get("error")
        if isinstance(err, dict) and isinstance(err.get("message"), str):
            error = err["message"]
        elif not ok:
            error = "; ".join(self.noise) or "the gemini CLI reported an error"
        self.result = CliResult(ok=ok, usage=usage_from_stats(event.get("stats")), error=error)

    # -- shared -------------------------------------------------------------------------------

    def _text(self, text: str, out: list[Event]) -> None:
        if not self.started:
            self.started = True
            out.append(Start(id=self.response_id, model=self.model))
        elif self._tool_since_text and not self._ends_newline:
            text = "\n\n" + text
        self._tool_since_text = False
        self._ends_newline = text.endswith("\n")
        self.text_parts.append(text)
        out.append(TextDelta(0, text))

    def _note(self, line: str) -> None:
        self.noise.append(line[:_MAX_LINE])

    def _saw_login_prompt(self, text: str) -> None:
        self.login_prompt = True
        self._note(text.strip())


def _has_marker(text: str, markers: tuple[str, ...]) -> bool:
    low = text.lower()
    return any(m in low for m in markers)


def _tail(diagnostics: str, lines: int = 8, chars: int = 1500) -> str:
    kept = [ln.strip() for ln in diagnostics.splitlines() if ln.strip()][-lines:]
    text = " | ".join(kept)
    return text[-chars:]


def failure_error(
    returncode: int | None,
    diagnostics: str,
    secrets: Iterable[str] = (),
    login_prompt: bool = False,
) -> Error:
    """One clear `Error` for a run that failed: exit code plus the CLI's last words (scrubbed).

    `diagnostics` is the CLI's stderr tail and any stdout that was not an answer.
    """
    said = scrub(_tail(diagnostics), secrets)
    low = diagnostics.lower()
    detail = f" (the CLI said: {said})" if said else ""
    if login_prompt or returncode == EXIT_AUTH or _has_marker(low, AUTH_MARKERS):
        if "google_cloud_project" in low:
            return _error(
                401, f"{LOGIN_HINT}; this account also needs GOOGLE_CLOUD_PROJECT{detail}"
            )
        return _error(401, f"{LOGIN_HINT}{detail}")
    if _has_marker(low, QUOTA_MARKERS):
        return _error(429, f"the gemini CLI hit a rate or quota limit{detail}")
    if _has_marker(low, MODEL_MARKERS):
        return _error(404, f"the gemini CLI does not know the requested model{detail}")
    if returncode == EXIT_UNTRUSTED:
        return _error(
            502,
            "the gemini CLI refused to run in an untrusted folder (exit 55); a newer CLI may "
            f"need `gemini folders trust` or GEMINI_CLI_TRUST_WORKSPACE=true{detail}",
        )
    what = {
        EXIT_INPUT: "rejected its input",
        EXIT_CONFIG: "found a problem in its configuration",
        EXIT_TURN_LIMIT: "reached its session turn limit",
        EXIT_CANCELLED: "was cancelled",
    }.get(returncode or 0, "failed")
    code = f" with exit code {returncode}" if returncode is not None else ""
    return _error(502, f"the gemini CLI {what}{code}{detail}")


def _error(status: int, message: str) -> Error:
    return Error(message=message, status=status, kind=error_kind(status))

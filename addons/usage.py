"""Usage addon: one row per finished LLM exchange in the sqlite usage file, and a live line.

Every exchange (answered, failed upstream, answered locally by a command, cut short) is
recorded once, at `response` or `error`, after the responses addon has finished with it: a row
of tokens, cost, timings, route and outcome (never a key, never the text unless
`usage_store_content` is on). Tokens the backend did not report are counted offline with
tiktoken. The writer runs on its own thread: recording never blocks the event loop.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict

from mitmproxy import ctx, http
from mitmproxy.addonmanager import Loader

from addons.config import Config, usage_db_path
from protocol import tokens
from protocol.canonical import TextPart, ThinkingPart, ToolCallPart
from protocol.exchange import Exchange, answer_of, exchange_of
from protocol.prices import DEFAULT_PRICES, PriceTable, load_prices
from protocol.usage_store import UsageRow, UsageStore, row_from_exchange

logger = logging.getLogger(__name__)

DEFAULT_DB = "llm_usage.db"


def answer_tokens(ex: Exchange) -> int:
    """Tokens of what the backend produced (text, reasoning, tool calls), counted offline."""
    answer = answer_of(ex)
    if answer is None:
        return 0
    model = ex.route.active.model if ex.route.active else ex.requested_model
    total = 0
    for part in answer.parts:
        if isinstance(part, TextPart | ThinkingPart):
            total += tokens.count_text(part.text, model)
        elif isinstance(part, ToolCallPart):
            total += tokens.count_text(part.name, model) + tokens.count_text(part.arguments, model)
    return total


def fill_counted_usage(ex: Exchange) -> None:
    """What the upstream did not report (streams cut short, backends without usage), counted."""
    usage = ex.usage
    if usage.input_tokens is not None and usage.output_tokens is not None:
        return
    if ex.answer is None and ex.outcome not in ("ok", "loop_halted"):
        return  # nothing was generated: an error costs nothing to count
    counted = usage.model_copy()
    if counted.input_tokens is None:
        counted.input_tokens = tokens.count_request(ex.request)
    if counted.output_tokens is None:
        counted.output_tokens = answer_tokens(ex)
    ex.usage, ex.usage_source = counted, "counted"


class SessionTotals:
    """Running totals per session since the proxy started (the live line, mitmweb's comment
    column); the most recent sessions only, so memory stays bounded."""

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._totals: OrderedDict[str, list[float]] = OrderedDict()

    def add(
        self, session: str | None, tokens_in: int | None, tokens_out: int | None, cost: float | None
    ) -> str:
        key = session or "-"
        entry = self._totals.pop(key, None) or [0, 0, 0, 0.0]
        entry[0] += 1
        entry[1] += tokens_in or 0
        entry[2] += tokens_out or 0
        entry[3] += cost or 0.0
        self._totals[key] = entry
        if len(self._totals) > self.limit:
            self._totals.popitem(last=False)
        requests, total_in, total_out, total_cost = entry
        return (
            f"session {key}: {int(requests)} req, in={int(total_in)} out={int(total_out)}, "
            f"${total_cost:.4f}"
        )


def live_line(row: UsageRow, total: str) -> str:
    """The live line of one exchange: front, route, tokens, cost, latency, outcome, running
    total of its session."""
    tokens_in = row.input_tokens if row.input_tokens is not None else "-"
    tokens_out = row.output_tokens if row.output_tokens is not None else "-"
    cost = f"${row.cost_usd:.6f}" if row.cost_usd is not None else "-"
    status = f" {row.status}" if row.status and row.status >= 400 else ""
    return (
        f"{row.front} {row.arrival} -> {row.backend or '-'}:"
        f"{row.model_used or row.model_requested or '-'} in={tokens_in} out={tokens_out} "
        f"cost={cost} {row.latency_ms or 0.0:.0f}ms {row.outcome}{status} | {total}"
    )


class LiveLog:
    """The live lines, one per finished exchange, as log records at info level.

    A line comes out at once when the previous one is at least `WINDOW` seconds old (an
    interactive session sees each exchange as it ends). Lines that come faster (under load)
    gather for up to `WINDOW` and go out as one record: a log record costs more than the line
    itself (mitmproxy's terminal log writes each to the terminal), and at a thousand requests a
    second nobody reads them one by one. Every line is kept, the ones after the first of a
    record with their own time.
    """

    WINDOW = 0.1

    def __init__(self) -> None:
        self._last = -1e9  # monotonic time of the last record
        self._pending: list[tuple[float, str]] = []  # (wall time, line)
        self._timer: asyncio.TimerHandle | None = None

    def line(self, text: str) -> None:
        now = time.monotonic()
        if not self._pending and now - self._last >= self.WINDOW:
            self._last = now
            logger.info(text)
            return
        self._pending.append((time.time(), text))
        if self._timer is None:
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:  # no event loop (a test calling the hooks): write it now
                self.flush()
                return
            self._timer = loop.call_later(max(0.0, self._last + self.WINDOW - now), self.flush)

    def flush(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        pending, self._pending = self._pending, []
        if not pending:
            return
        self._last = time.monotonic()
        first_time, first = pending[0]
        text = "\n".join([first, *(f"[{_clock(t)}] {line}" for t, line in pending[1:])])
        record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, text, (), None)
        record.created = first_time  # the terminal log prints the first line's own time
        record.msecs = (first_time % 1) * 1000
        logger.handle(record)


def _clock(t: float) -> str:
    """`t` as mitmproxy's terminal log prints a record's time (HH:MM:SS.mmm, local time)."""
    return f"{time.strftime('%H:%M:%S', time.localtime(t))}.{int(t % 1 * 1000):03d}"


def _terminal_shows_info() -> bool:
    """False when the terminal log is set to show only warnings and errors: then nobody sees
    the live line (it costs a log record per request). mitmweb has no terminal log: its event
    log shows the line."""
    verbosity = getattr(ctx.options, "termlog_verbosity", None)
    return verbosity is None or verbosity in ("debug", "info")


class UsageRecorder:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.totals = SessionTotals()
        self.prices: PriceTable = DEFAULT_PRICES
        self.live = True
        self.live_log = LiveLog()

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "usage_db",
            str,
            DEFAULT_DB,
            "The usage sqlite file (env LLM_USAGE_DB); empty: record nothing.",
        )
        loader.add_option(
            "usage_store_content",
            bool,
            False,
            "Also store each exchange's prompt and answer text in the usage rows.",
        )
        loader.add_option(
            "usage_prices", str, "", "A JSON or YAML price file merged over the built-in table."
        )
        loader.add_option("usage_live", bool, True, "Log one compact line per finished exchange.")

    def configure(self, updated: set[str]) -> None:
        if updated & {"usage_db", "usage_store_content", "llm_env_file"}:
            path = usage_db_path(self.config)
            current = self.config.usage_store
            if not path:  # recording turned off
                if current is not None:
                    current.close()
                self.config.usage_store = None
            elif (
                current is None
                or current.path != path
                or current.store_content != ctx.options.usage_store_content
            ):
                if current is not None:
                    current.close()
                self.config.usage_store = UsageStore(
                    path, store_content=ctx.options.usage_store_content
                )
        if "usage_prices" in updated:
            path = ctx.options.usage_prices
            self.prices = load_prices(path) if path else DEFAULT_PRICES
        if updated & {"usage_live", "termlog_verbosity"}:
            self.live = ctx.options.usage_live and _terminal_shows_info()

    def done(self) -> None:
        self.live_log.flush()
        if self.config.usage_store is not None:
            self.config.usage_store.close()
            self.config.usage_store = None

    def response(self, flow: http.HTTPFlow) -> None:
        self._record(flow)

    def error(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        if ex is not None and ex.resuming:
            return  # the failover addon answers with the next attempt
        self._record(flow)

    def _record(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        store = self.config.usage_store
        if ex is None or ex.recorded or store is None:
            return
        ex.recorded = True
        if ex.finished is None:
            ex.finished = time.monotonic()
        fill_counted_usage(ex)
        content = self._content(ex) if store.store_content else None
        row = row_from_exchange(ex, prices=self.prices, content=content)
        store.record(row)
        total = self.totals.add(row.session_id, row.input_tokens, row.output_tokens, row.cost_usd)
        if self.live:
            self.live_log.line(live_line(row, total))
        usage_note = f"usage: in={row.input_tokens} out={row.output_tokens}; {total}"
        flow.comment = f"{flow.comment}\n{usage_note}" if flow.comment else usage_note

    @staticmethod
    def _content(ex: Exchange) -> str:
        prompt = "\n".join(m.text() for m in ex.request.messages if m.role == "user")
        answer_parts = answer.parts if (answer := answer_of(ex)) else []
        reply = "".join(p.text for p in answer_parts if isinstance(p, TextPart))
        return f"{prompt}\n---\n{reply}"

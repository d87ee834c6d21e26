"""The live line follows the terminal's verbosity (no log record per request nobody sees), and
comes out at once for an interactive session, in one record per burst under load."""

from __future__ import annotations

import asyncio
import logging
import re
import time

import pytest
from mitmproxy.addons import termlog
from mitmproxy.test import taddons

from addons.config import Config
from addons.usage import LiveLog, UsageRecorder


@pytest.mark.parametrize(("verbosity", "shown"), [("info", True), ("debug", True), ("warn", False)])
def test_the_live_line_is_made_only_when_the_terminal_shows_it(verbosity: str, shown: bool) -> None:
    recorder = UsageRecorder(Config())
    with taddons.context(termlog.TermLog(), recorder) as tctx:
        tctx.configure(recorder, usage_db="", termlog_verbosity=verbosity)
        assert recorder.live is shown
        tctx.configure(recorder, usage_live=False)
        assert recorder.live is False


def test_without_a_terminal_log_the_live_line_is_made() -> None:
    """mitmweb: its event log shows the line."""
    recorder = UsageRecorder(Config())
    with taddons.context(recorder) as tctx:
        tctx.configure(recorder, usage_db="", usage_live=True)
        assert recorder.live is True


def _live_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "addons.usage"]


def test_a_burst_of_live_lines_comes_out_as_one_record_with_every_line(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="addons.usage")

    async def burst() -> None:
        live = LiveLog()
        live.line("first")
        started = time.time()
        for i in range(2, 6):
            live.line(f"line {i}")
        assert [r.getMessage() for r in _live_records(caplog)] == ["first"]  # at once
        await asyncio.sleep(LiveLog.WINDOW * 3)
        records = _live_records(caplog)
        assert len(records) == 2
        lines = records[1].getMessage().split("\n")
        assert lines[0] == "line 2"  # the record's own time is its first line's
        assert abs(records[1].created - started) < 1.0
        for i, text in zip(range(3, 6), lines[1:], strict=True):
            assert re.fullmatch(rf"\[\d\d:\d\d:\d\d\.\d{{3}}\] line {i}", text)
        await asyncio.sleep(LiveLog.WINDOW * 2)
        live.line("after a quiet spell")  # comes out at once again
        assert _live_records(caplog)[-1].getMessage() == "after a quiet spell"

    asyncio.run(burst())


def test_pending_live_lines_are_written_at_shutdown(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="addons.usage")

    async def lines() -> LiveLog:
        live = LiveLog()
        live.line("a")
        live.line("b")
        return live

    live = asyncio.run(lines())
    assert [r.getMessage() for r in _live_records(caplog)] == ["a"]
    live.flush()
    assert [r.getMessage() for r in _live_records(caplog)] == ["a", "b"]

"""The live line follows the terminal's verbosity: no log record per request nobody sees."""

from __future__ import annotations

import pytest
from mitmproxy.addons import termlog
from mitmproxy.test import taddons

from addons.config import Config
from addons.usage import UsageRecorder


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

"""The collector is tuned once the proxy runs, and put back when it stops or is told to."""

from __future__ import annotations

import gc

from mitmproxy.test import taddons

from addons.gc_tuning import THRESHOLDS, GcTuning


def test_running_freezes_the_start_up_heap_and_done_puts_everything_back() -> None:
    before = gc.get_threshold()
    tuning = GcTuning()
    with taddons.context(tuning):
        tuning.running()
        assert gc.get_threshold() == THRESHOLDS
        assert gc.get_freeze_count() > 1000  # the modules and objects loaded so far
        tuning.done()
    assert gc.get_threshold() == before
    assert gc.get_freeze_count() == 0


def test_the_option_turns_it_off() -> None:
    before = gc.get_threshold()
    tuning = GcTuning()
    with taddons.context(tuning) as tctx:
        tctx.configure(tuning, llm_gc_tuning=False)
        tuning.running()
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0
        tctx.configure(tuning, llm_gc_tuning=True)
        tuning.running()
        assert gc.get_threshold() == THRESHOLDS
        tctx.configure(tuning, llm_gc_tuning=False)  # at run time: back at once
        assert gc.get_threshold() == before and gc.get_freeze_count() == 0

"""GC tuning addon: Python's cyclic garbage collector set for a proxy's steady state.

mitmproxy leaves about a hundred objects per request in reference cycles (flows, connections,
layers), so the collector runs many times a second under load. With the default thresholds
(700 net allocations, then every 10th run one level up) and the heap a proxy starts with
(mitmproxy, pydantic's schemas, the codecs, the price table), that cost about 250 µs of CPU per
request at concurrency 32 (measured with `gc.callbacks`): a fifth of a request's cost, and
more than mitmproxy itself spends on it without the chain (70 µs). Once running, the start-up
heap is moved out of the collector's sight (`gc.freeze`: those objects live as long as the
process anyway) and the youngest generation is collected every 2,000 net allocations: 70-100
µs per request. (Larger thresholds measured worse: each run then walks more objects than the
CPU caches hold.) Option `llm_gc_tuning` (on) turns it off.
"""

from __future__ import annotations

import gc

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader

THRESHOLDS = (2_000, 10, 10)


class GcTuning:
    def __init__(self) -> None:
        self._default = gc.get_threshold()
        self._applied = False

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_gc_tuning",
            bool,
            True,
            "Tune Python's garbage collector for a proxy under load (freeze the start-up heap, "
            "collect the young generation less often).",
        )

    def running(self) -> None:
        if ctx.options.llm_gc_tuning:
            gc.collect()
            gc.freeze()
            gc.set_threshold(*THRESHOLDS)
            self._applied = True

    def configure(self, updated: set[str]) -> None:
        if "llm_gc_tuning" in updated and not ctx.options.llm_gc_tuning:
            self._restore()

    def done(self) -> None:
        self._restore()

    def _restore(self) -> None:
        if self._applied:
            gc.set_threshold(*self._default)
            gc.unfreeze()
            self._applied = False

"""Hook dispatch: mitmproxy's addon manager visiting, for each event, only the addons that
implement its hook.

mitmproxy's own `AddonManager.trigger_event` walks every addon of the chain for every event: a
traversal of its nested addons, a `getattr` for the hook, an error guard and a coroutine each.
mitmdump and mitmweb hold about forty addons, a request makes eight events (four flow hooks,
each followed by `update`), and few addons implement any of them: in an interleaved A/B (six
rounds of 2,000 requests at concurrency 32, CPU of the proxy process) that walk was 0.54 ms of
the 1.35 ms stock mitmdump spends on a request (0.81 ms with the walk cached), and as much of
the chain's 1.64 ms under `mitmdump -s addons/chain.py` (1.09 ms).

- `HookCachingAddonManager` builds the list of hook functions once per event name and rebuilds
  it whenever the chain changes (`register`, which `add` goes through, `remove`, and a change of the `scripts`
  option, which may only reorder the scripts). Each function runs inside mitmproxy's error
  guard, as before; `AddonHalt` still stops the event. The run command (`addons.serve`) uses it
  from the start.
- `FastDispatch` (a part of the chain) gives a stock host the same once it runs: the chain loaded
  into mitmdump or mitmweb turns the master's manager into a `HookCachingAddonManager` (the same
  object, its class changed: every reference to it stays valid) and turns it back when the chain
  is unloaded or option `llm_fast_dispatch` is set off. Off, mitmproxy's own dispatch is left
  untouched (the figure `bench/relay.py` compares the chain's own cost with).

What the cache cannot see: an addon that grows or drops a hook method, or swaps its nested
`addons` list, without going through the manager. mitmproxy's own addons do neither (its script
loader re-registers a reloaded script, and reorders scripts only on a `scripts` change).
"""

from __future__ import annotations

import dataclasses
import inspect
import logging
from collections.abc import Callable
from typing import Any

from mitmproxy import addonmanager, ctx, exceptions, hooks, master
from mitmproxy.addonmanager import Loader

logger = logging.getLogger(__name__)

# Hook.args() looks up the dataclass fields on every call; the names never change per class.
_ARG_NAMES: dict[type, list[str]] = {}


class HookCachingAddonManager(addonmanager.AddonManager):
    """An addon manager that calls, for each event, only the hook functions it has (module doc)."""

    def __init__(self, m: master.Master) -> None:
        super().__init__(m)
        self._handlers: dict[str, list[Callable[..., Any]]] = {}

    def invalidate(self) -> None:
        """The chain changed: look the hook functions up again at the next event."""
        self._handlers.clear()

    def register(self, addon: Any) -> Any:  # `add` registers each addon through this
        try:
            return super().register(addon)
        finally:
            self.invalidate()

    def remove(self, addon: Any) -> None:
        # before: the removed addon's `done` may hand the manager its stock class back
        self.invalidate()
        super().remove(addon)

    def _handlers_for(self, event: hooks.Hook) -> list[Callable[..., Any]]:
        handlers = self._handlers.get(event.name)
        if handlers is None:
            handlers = []
            for top in self.chain:
                with addonmanager.safecall():  # a hook attribute that is not callable: logged
                    handlers.extend(func for _, func in self._iter_hooks(top, event))
            self._handlers[event.name] = handlers
        return handlers

    async def trigger_event(self, event: hooks.Hook) -> None:
        names = _ARG_NAMES.get(type(event))
        if names is None:
            names = _ARG_NAMES[type(event)] = [
                f.name
                for f in dataclasses.fields(event)  # type: ignore[arg-type]
            ]
        args = [getattr(event, name) for name in names]
        for func in self._handlers_for(event):
            try:
                with addonmanager.safecall():
                    result = func(*args)
                    if result is not None and inspect.isawaitable(result):
                        await result
            except exceptions.AddonHalt:
                return


def cache_hooks(manager: addonmanager.AddonManager) -> bool:
    """Make mitmproxy's own `manager` a `HookCachingAddonManager` in place; False when it is
    not a stock manager (already caching, or a subclass someone else made)."""
    if type(manager) is not addonmanager.AddonManager:
        return False
    manager.__class__ = HookCachingAddonManager
    assert isinstance(manager, HookCachingAddonManager)
    manager._handlers = {}
    return True


def stock_hooks(manager: addonmanager.AddonManager) -> None:
    """Undo `cache_hooks`: `manager` dispatches as mitmproxy does again."""
    if type(manager) is HookCachingAddonManager:
        changed: Any = manager  # its class changes under it
        changed.__class__ = addonmanager.AddonManager
        vars(changed).pop("_handlers", None)


class FastDispatch:
    """Caches the host's hook dispatch while the chain runs (module doc)."""

    def __init__(self) -> None:
        self._running = False
        self._changed: addonmanager.AddonManager | None = None  # the manager this addon changed

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_fast_dispatch",
            bool,
            True,
            "Under mitmdump or mitmweb, call each hook only on the addons that implement it "
            "(mitmproxy walks every addon for every event). The run command always does.",
        )

    def running(self) -> None:
        self._running = True
        self._apply()

    def configure(self, updated: set[str]) -> None:
        if "llm_fast_dispatch" in updated and self._running:
            self._apply()
        if "scripts" in updated:
            manager = ctx.master.addons
            if isinstance(manager, HookCachingAddonManager):
                manager.invalidate()

    def done(self) -> None:
        self._running = False
        self._restore()

    def _apply(self) -> None:
        manager = ctx.master.addons
        if not ctx.options.llm_fast_dispatch:
            self._restore()
        elif cache_hooks(manager):
            self._changed = manager
            logger.debug("hook dispatch cached (llm_fast_dispatch)")

    def _restore(self) -> None:
        if self._changed is not None:
            stock_hooks(self._changed)
            self._changed = None

"""The addon chain, in the order of the data: load it with `mitmdump -s addons/chain.py`.

gateway (front protocol, key, canonical request) -> commands (session, in-chat commands,
overrides) -> routing (plan of attempts, first attempt's rewritten flow) -> failover (the next
attempts when one fails) -> timeouts (first byte, idle) -> responses (stream pipeline and
whole-answer conversion) -> usage (one sqlite row per exchange; its endpoints are answered
before the gateway by usage_api). `Config` comes first (the shared environment), `ConfFile`
last (applies mitm.conf once every chain option exists).
"""

from __future__ import annotations

import inspect
import logging
import sys
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

# every module that declares hooks, so that `hooks.all_hooks` knows them all
from mitmproxy import addonmanager, exceptions, hooks, log  # noqa: F401
from mitmproxy.proxy import layer, server_hooks  # noqa: F401
from mitmproxy.proxy.layers import dns, http, modes, quic, tcp, tls, udp, websocket  # noqa: F401

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # mitmproxy puts only this file's folder on sys.path
    sys.path.insert(0, _ROOT)

from addons.commands import Commands  # noqa: E402
from addons.conffile import ConfFile  # noqa: E402
from addons.config import Config  # noqa: E402
from addons.dispatch import FastDispatch  # noqa: E402
from addons.failover import Failover  # noqa: E402
from addons.gateway import Gateway  # noqa: E402
from addons.gc_tuning import GcTuning  # noqa: E402
from addons.gemini_cli import GeminiCli  # noqa: E402
from addons.intercept import InterceptTls  # noqa: E402
from addons.llmview import LLMView  # noqa: E402
from addons.loops import Loops  # noqa: E402
from addons.redaction import Redaction  # noqa: E402
from addons.responses import Responses  # noqa: E402
from addons.routes import Routes  # noqa: E402
from addons.routing import Routing  # noqa: E402
from addons.timeouts import Timeouts  # noqa: E402
from addons.usage import UsageRecorder  # noqa: E402
from addons.usage_api import UsageApi  # noqa: E402

logger = logging.getLogger(__name__)


class LLMProxy:
    """The whole chain as one mitmproxy addon that calls its parts' hooks itself.

    For each hook some part implements, the chain has one function that calls those parts'
    functions in chain order (`HookDispatch`); mitmproxy sees a single addon with no nested
    ones. With nested addons, mitmproxy's own addon manager walks all sixteen parts on every
    event and its `update` follow-up (a lookup each, an error guard and a call per
    implementer); here it looks up one addon.
    """

    def __init__(self) -> None:
        self.parts = make_chain()
        for name, funcs in hook_functions(self.parts).items():
            setattr(self, name, funcs[0] if len(funcs) == 1 else HookDispatch(name, funcs))


def make_chain() -> list[object]:
    config = Config()
    routing = Routing(config)
    timeouts = Timeouts(config)
    return [
        config,
        InterceptTls(),
        UsageApi(config),
        Gateway(config),
        Commands(config),
        Redaction(config),
        Loops(config),
        routing,
        Failover(config, routing),
        timeouts,
        Responses(config, timeouts),
        UsageRecorder(config),
        Routes(config),
        GeminiCli(config),
        LLMView(),
        GcTuning(),
        FastDispatch(),
        ConfFile(),
    ]


def hook_functions(parts: list[object]) -> dict[str, list[Callable[..., Any]]]:
    """Each mitmproxy hook the parts implement, with their functions in chain order."""
    found: dict[str, list[Callable[..., Any]]] = {}
    for name in hooks.all_hooks:
        for part in parts:
            func = getattr(part, name, None)
            if callable(func):
                found.setdefault(name, []).append(func)
    return found


class HookDispatch:
    """Calls the parts' functions for one hook, in order, as mitmproxy would call addons.

    A function that returns an awaitable is awaited before the next one runs (the dispatch then
    returns a coroutine for mitmproxy to await). An error in one part is logged as mitmproxy logs
    an addon error and the next part still runs; `AddonHalt` (stop the chain) and `OptionsError`
    (a rejected option value) go on to mitmproxy.
    """

    __slots__ = ("name", "funcs")

    def __init__(self, name: str, funcs: list[Callable[..., Any]]) -> None:
        self.name = name
        self.funcs = funcs

    def __call__(self, *args: Any) -> Any:
        funcs = self.funcs
        for i, func in enumerate(funcs):
            try:
                result = func(*args)
            except _PASS_ON:
                raise
            except Exception as e:
                _addon_error(func, e)
                continue
            if result is not None and inspect.isawaitable(result):
                return self._finish(result, i + 1, args)
        return None

    async def _finish(self, pending: Awaitable[Any], start: int, args: tuple[Any, ...]) -> None:
        funcs = self.funcs
        try:
            await pending
        except _PASS_ON:
            raise
        except Exception as e:
            _addon_error(funcs[start - 1], e)
        for func in funcs[start:]:
            try:
                result = func(*args)
                if result is not None and inspect.isawaitable(result):
                    await result
            except _PASS_ON:
                raise
            except Exception as e:
                _addon_error(func, e)


_PASS_ON = (exceptions.AddonHalt, exceptions.OptionsError)


def _addon_error(func: Callable[..., Any], error: Exception) -> None:
    owner = getattr(func, "__self__", func)
    logger.error(f"Addon error in {type(owner).__name__}: {error}", exc_info=error)


addons = [LLMProxy()]

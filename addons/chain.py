"""The addon chain, in the order of the data: load it with `mitmdump -s addons/chain.py`.

gateway (front protocol, key, canonical request) -> commands (session, in-chat commands,
overrides) -> routing (plan of attempts, first attempt's rewritten flow) -> failover (the next
attempts when one fails) -> timeouts (first byte, idle) -> responses (stream pipeline and
whole-answer conversion) -> usage (one sqlite row per exchange; its endpoints are answered
before the gateway by usage_api). `Config` comes first (the shared environment), `ConfFile`
last (applies mitm.conf once every chain option exists).
"""

from __future__ import annotations

import sys
from pathlib import Path

_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:  # mitmproxy puts only this file's folder on sys.path
    sys.path.insert(0, _ROOT)

from addons.commands import Commands  # noqa: E402
from addons.conffile import ConfFile  # noqa: E402
from addons.config import Config  # noqa: E402
from addons.failover import Failover  # noqa: E402
from addons.gateway import Gateway  # noqa: E402
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


class LLMProxy:
    """The whole chain as one mitmproxy addon; its parts are its nested `addons`.

    mitmproxy calls each nested addon's hooks in order, exactly as for top-level addons, but
    pays its per-addon dispatch cost (an error guard and a coroutine per event) once for the
    chain instead of once per part.
    """

    def __init__(self) -> None:
        self.addons = make_chain()


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
        ConfFile(),
    ]


addons = [LLMProxy()]

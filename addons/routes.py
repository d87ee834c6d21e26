"""Routes addon: the failover routes, from `mitm.conf`/`--set` and from in-chat commands.

Owns the `llm_routes` option (one string per route, `NAME=POLICY:ELEMENT,ELEMENT,...`, e.g.
`smart=km:anthropic:claude-sonnet-4-5,openai:gpt-4o`) and the process-wide `RouteStore`,
kept in the usage sqlite file (`usage_db`, or in memory when usage recording is off) so routes
made in the chat survive a restart. Routing reads `config.routes`; the commands addon hands it
to the route commands.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from addons.config import Config, usage_db_path
from protocol.backends import KINDS
from protocol.routes import RouteStore

logger = logging.getLogger(__name__)


def parse_route_options(values: Sequence[str]) -> dict[str, dict[str, Any]]:
    """`["NAME=POLICY:ELEMENT,ELEMENT"]` as `RouteStore.load_config` takes it."""
    routes: dict[str, dict[str, Any]] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        policy, sep2, elements = rest.partition(":")
        name, policy = name.strip(), policy.strip()
        if not sep or not sep2 or not name or not policy:
            raise ValueError(
                f"llm_routes: '{value}' is not NAME=POLICY:BACKEND:MODEL,BACKEND:MODEL,..."
            )
        if name.lower() in KINDS:
            raise ValueError(f"llm_routes: route '{name}' has the name of a backend")
        if name in routes:
            raise ValueError(f"llm_routes: route '{name}' is defined twice")
        routes[name] = {
            "policy": policy,
            "elements": [e.strip() for e in elements.split(",") if e.strip()],
        }
    return routes


class Routes:
    def __init__(self, config: Config) -> None:
        self.config = config
        self._path: str | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_routes",
            Sequence[str],
            [],
            "Failover routes, each NAME=POLICY:BACKEND:MODEL,BACKEND:MODEL,... "
            "(policy k, m, km or mk); clients ask for a route by its name as the model.",
        )

    def configure(self, updated: set[str]) -> None:
        if updated & {"usage_db", "llm_env_file"} or self.config.routes is None:
            path = usage_db_path(self.config) if "usage_db" in ctx.options else ""
            if self.config.routes is None or path != self._path:
                if self.config.routes is not None:
                    self.config.routes.close()
                self.config.routes = RouteStore(path or None)
                self._path = path
                updated = updated | {"llm_routes"}
        if "llm_routes" in updated:
            try:
                self.config.routes.load_config(parse_route_options(ctx.options.llm_routes))
            except ValueError as e:
                raise exceptions.OptionsError(str(e)) from None

    def running(self) -> None:
        routes = self.config.routes
        if routes is not None and routes.names():
            logger.info("failover routes: %s", ", ".join(routes.names()))

    def done(self) -> None:
        if self.config.routes is not None:
            self.config.routes.close()
            self.config.routes = None

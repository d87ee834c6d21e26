"""Gemini CLI addon: the local, logged-in Gemini CLI as the backend `gemini-cli-direct`.

When the `gemini` executable is found (option `gemini_cli_path`, default `gemini` on PATH), a
small local server (`protocol.local_server`) on 127.0.0.1 is started in `running` and
registered as the backend `gemini-cli-direct`: a client asks for `gemini-cli-direct:<model>`
and the flow is routed there like to any backend (conversion to the client's protocol,
failover, usage). Each request runs the CLI once (`protocol.gemini_cli.GeminiCliRunner`: the
whole conversation as the prompt, a working directory per session, at most
`GEMINI_CLI_MAX_PROCESSES` at once, `GEMINI_CLI_TIMEOUT`, the process group killed when the
client goes away), streaming its output as it comes. The CLI gets PATH, HOME and the
GOOGLE_*/GEMINI_* variables (none of the proxy's keys), plus the names listed in
`GEMINI_CLI_ENV_ALLOWLIST` (comma-separated, e.g. `HTTPS_PROXY`).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import AsyncIterator, Mapping

from mitmproxy import ctx
from mitmproxy.addonmanager import Loader

from addons.config import Config
from addons.routing import SESSION_HEADER
from protocol.backends import KINDS, Backend
from protocol.canonical import ChatRequest, Event
from protocol.gemini_cli import GeminiCliRunner
from protocol.local_server import LocalServer

logger = logging.getLogger(__name__)

NAME = "gemini-cli-direct"


class GeminiCli:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.server: LocalServer | None = None
        self.runner: GeminiCliRunner | None = None

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "gemini_cli_path",
            str,
            "gemini",
            "The Gemini CLI executable behind the gemini-cli-direct backend (empty: off).",
        )

    async def running(self) -> None:
        path = ctx.options.gemini_cli_path
        env = {**os.environ, **self.config.env}
        found = shutil.which(path, path=env.get("PATH")) if path else None
        if found is None:
            logger.debug("gemini CLI not found (%r): backend %s off", path, NAME)
            return
        allow = [n.strip() for n in env.get("GEMINI_CLI_ENV_ALLOWLIST", "").split(",") if n.strip()]
        self.runner = GeminiCliRunner.from_env(env, executable=found, env_allowlist=allow)
        self.server = LocalServer(self._events)
        port = await self.server.start()
        self.config.add_local_backend(Backend(KINDS[NAME], f"http://127.0.0.1:{port}/v1"))
        logger.info("backend %s: the Gemini CLI at %s", NAME, found)

    def _events(self, req: ChatRequest, headers: Mapping[str, str]) -> AsyncIterator[Event]:
        assert self.runner is not None
        return self.runner.run(req, headers.get(SESSION_HEADER.decode()))

    async def done(self) -> None:
        self.config.remove_local_backend(NAME)
        if self.server is not None:
            await self.server.stop()
            self.server = None

"""Config addon: the proxy's environment (process env over `.env`) and the configured backends.

Every other chain addon is handed this object and reads `backends`, `default_backend` and
`proxy_key` from it (they change when `llm_env_file` changes), and shares `reachability`, what
is known of whether each backend host accepts connections, the sessions and the model catalog.
"""

from __future__ import annotations

import json
import logging
import os

from mitmproxy import ctx, exceptions
from mitmproxy.addonmanager import Loader

from protocol.backends import Backend, default_backend, load_backends
from protocol.catalog import ModelCatalog
from protocol.env import load_env
from protocol.keypool import KeyPool
from protocol.reachability import Reachability
from protocol.reasoning import ReasoningTable, set_table
from protocol.routes import RouteStore
from protocol.sessions import SessionStore
from protocol.timeouts import PerBackend
from protocol.usage_store import UsageStore

logger = logging.getLogger(__name__)

PROXY_KEY_VAR = "LLM_INTERACTIVE_PROXY_API_KEY"


class Config:
    def __init__(self) -> None:
        self.env: dict[str, str] = {}
        self.backends: dict[str, Backend] = {}
        self.local_backends: dict[str, Backend] = {}  # run by the proxy (the Gemini CLI)
        self.pools: dict[str, KeyPool] = {}  # each backend's keys: rotation, cooldowns
        self.default_backend: str | None = None
        self.proxy_key: str | None = None
        self.reachability = Reachability()
        self.sessions = SessionStore()
        self.catalog = ModelCatalog()
        self.usage_store: UsageStore | None = None  # opened by the usage addon
        self.routes: RouteStore | None = None  # the failover routes (the routes addon's)
        # the timeouts addon's options, parsed: llm_connect/first_byte/idle_timeout
        self.connect_timeout = PerBackend(10.0)
        self.first_byte_timeout = PerBackend(120.0)
        self.idle_timeout = PerBackend(120.0)

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_env_file", str, ".env", "File of NAME=value lines read under the environment."
        )
        loader.add_option(
            "llm_reasoning_table",
            str,
            "",
            "Overrides of the reasoning table (protocol/reasoning.py), as a mapping in mitm.conf "
            'or JSON with --set, e.g. {"anthropic_budget": {"high": 24000}}.',
        )

    def configure(self, updated: set[str]) -> None:
        if "llm_env_file" in updated:
            self.reload(ctx.options.llm_env_file)
            self.catalog.invalidate()
        if "llm_reasoning_table" in updated:
            text = ctx.options.llm_reasoning_table.strip()
            try:
                overrides = json.loads(text) if text else None
                set_table(ReasoningTable.from_config(overrides) if overrides else None)
            except ValueError as e:
                raise exceptions.OptionsError(f"llm_reasoning_table: {e}") from None

    def reload(self, env_file: str | None) -> None:
        self.apply(load_env(env_file))

    def apply(self, env: dict[str, str]) -> None:
        """Use `env` (already merged) as the proxy's environment."""
        self.env = env
        self.backends = load_backends(self.env)
        self.backends.update(self.local_backends)
        self.pools = {
            name: KeyPool(b.keys)
            for name, b in self.backends.items()
            if b.keys and b.kind.alias_of is None
        }
        for name, b in self.backends.items():  # an alias shares its API's keys and cooldowns
            if b.kind.alias_of in self.pools:
                self.pools[name] = self.pools[b.kind.alias_of]
        self.default_backend = default_backend(self.backends, self.env)
        self.proxy_key = self.env.get(PROXY_KEY_VAR) or None

    def add_local_backend(self, backend: Backend) -> None:
        self.local_backends[backend.name] = backend
        self.backends[backend.name] = backend

    def remove_local_backend(self, name: str) -> None:
        self.local_backends.pop(name, None)
        self.backends.pop(name, None)

    def scrub(self, text: str) -> str:
        """`text` with every configured key value (backends' and the proxy's) masked."""
        for backend in self.backends.values():
            for key in backend.keys:
                if key.value in text:
                    text = text.replace(key.value, f"<{key.key_id}>")
        if self.proxy_key and self.proxy_key in text:
            text = text.replace(self.proxy_key, f"<{PROXY_KEY_VAR}>")
        return text

    def running(self) -> None:
        if self.backends:
            listed = ", ".join(
                f"{b.name} ({len(b.keys)} key{'s' if len(b.keys) != 1 else ''})"
                for b in self.backends.values()
                if b.kind.alias_of is None
            )
            logger.info("backends: %s; default: %s", listed, self.default_backend)
        else:
            logger.warning("no backend configured: set OPENAI_API_KEY, ANTHROPIC_API_KEY, ...")
        if self.proxy_key is None:
            logger.warning(
                "%s is not set: only clients on this machine are accepted, without a key",
                PROXY_KEY_VAR,
            )


def usage_db_path(config: Config) -> str:
    """The usage sqlite file (routes live in it too): the `usage_db` option when set, else
    env LLM_USAGE_DB, else the option's default; "" when recording is off."""
    path = ctx.options.usage_db
    if not ctx.options.has_changed("usage_db"):
        path = config.env.get("LLM_USAGE_DB") or path
    return os.path.expanduser(path)

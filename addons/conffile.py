"""ConfFile addon: applies `mitm.conf` (YAML, the same keys as `--set`) to options left at default.

It is the last addon of the chain, so every chain option exists when it loads. An option the
user already set (on the command line, or in mitmproxy's own config) is left as the user set
it: `--set` wins over `mitm.conf`. Keys of options this master does not have (a mitmdump-only
option under the lean launcher) are skipped with a debug log.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any, Optional

from mitmproxy import ctx, exceptions, optmanager
from mitmproxy.addonmanager import Loader

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent


def find_conf(name: str) -> Path | None:
    """`name` as given (relative to the working directory), else beside the chain's repo."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if not path.is_absolute() and (REPO_ROOT / path).is_file():
        return REPO_ROOT / path
    return None


def read_conf(path: Path) -> dict[str, Any]:
    data = optmanager.parse(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise exceptions.OptionsError(f"{path}: expected option: value lines")
    return data


def _as_text_option(typespec: Any, value: Any) -> Any:
    """YAML's `30` or `false` for an option that holds text means the text "30", "false"; a
    mapping means its JSON."""
    if typespec not in (str, Optional[str]):  # noqa: UP045
        return value
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, (int, float)):
        return str(value)
    if isinstance(value, (dict, list)):  # a mapping for an option read as JSON text
        return json.dumps(value)
    return value


class ConfFile:
    def __init__(self) -> None:
        self.applied: dict[str, Any] = {}

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_conf", str, "mitm.conf", "YAML file of option values applied under --set."
        )
        self.apply(ctx.options.llm_conf)

    def apply(self, name: str) -> None:
        path = find_conf(name)
        if path is None:
            if name != "mitm.conf":
                raise exceptions.OptionsError(f"configuration file not found: {name}")
            return
        updates: dict[str, Any] = {}
        for key, value in read_conf(path).items():
            if key not in ctx.options:
                logger.debug("%s: option %s does not exist here, skipped", path, key)
            elif not ctx.options.has_changed(key):
                value = _as_text_option(ctx.options._options[key].typespec, value)
                updates[key] = value
        ctx.options.update(**updates)
        self.applied = updates

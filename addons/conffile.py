"""ConfFile addon: applies `mitm.conf` (YAML, the same keys as `--set`) to options left at default.

It is the last addon of the chain, so every chain option exists when it loads. An option the
user already set (on the command line, or in mitmproxy's own config) is left as the user set
it: `--set` wins over `mitm.conf`. Keys of options this master does not have (a mitmdump-only
option under the lean launcher) are skipped with a debug log.

Option `llm_conf` names a file of its own applied over `mitm.conf` (its keys win; `mitm.conf`
still gives the rest, such as the lazy connection strategy the gateway needs). Under
`mitmdump -s` a `--set` of a chain option is held back by mitmproxy until the chain declares it
(after this addon's `load`), so the file named there is read from what mitmproxy holds back;
under the run command `--set` comes after `load`, and `configure` swaps the files (what the old
file set and the user did not is undone first).

The `--set` values mitmproxy holds back are also checked here, when every chain option exists:
mitmproxy parses them only after the chain's `load`, and an error there (an option given twice)
unloads the whole script without a word. Each bad one is logged as an error instead (mitmdump
and mitmweb then exit at start with that message) and left out.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Set as AbstractSet
from pathlib import Path
from typing import Any, Optional

from mitmproxy import ctx, exceptions, optmanager
from mitmproxy.addonmanager import Loader

logger = logging.getLogger(__name__)

REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONF = "mitm.conf"


def find_conf(name: str) -> Path | None:
    """`name` as given (relative to the working directory), else beside the chain's repo."""
    path = Path(name).expanduser()
    if path.is_file():
        return path
    if not path.is_absolute() and (REPO_ROOT / path).is_file():
        return REPO_ROOT / path
    return None


def conf_values(name: str) -> dict[str, Any]:
    """The values of `mitm.conf` (when there is one) with those of file `name` over them (none
    when `name` is empty or `mitm.conf` itself)."""
    default = find_conf(DEFAULT_CONF)
    values = read_conf(default) if default is not None else {}
    if name and name != DEFAULT_CONF:
        path = find_conf(name)
        if path is None:
            raise exceptions.OptionsError(f"configuration file not found: {name}")
        values.update(read_conf(path))
    return values


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


def check_deferred(options: optmanager.OptManager) -> dict[str, Any]:
    """Parse the `--set` values mitmproxy holds back for options that exist now; a value that
    does not parse is logged as an error and dropped. Returns the parsed values."""
    parsed: dict[str, Any] = {}
    for name, value in list(options.deferred.items()):
        if name not in options or not isinstance(value, optmanager._UnconvertedStrings):
            continue
        try:
            parsed[name] = options._parse_setval(options._options[name], value.val)
        except exceptions.OptionsError as e:
            del options.deferred[name]
            logger.error("--set %s: %s (the option keeps its value)", name, e)
    return parsed


class ConfFile:
    def __init__(self) -> None:
        self.applied: dict[str, Any] = {}
        self.source: str | None = None  # the `llm_conf` whose file is applied

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_conf",
            str,
            DEFAULT_CONF,
            "YAML file of option values applied under --set, over mitm.conf.",
        )
        name = check_deferred(ctx.options).get("llm_conf", ctx.options.llm_conf)
        try:
            self.apply(name)
        except exceptions.OptionsError as e:
            # raised here, mitmproxy would drop the script silently: logged, mitmdump exits
            logger.error("llm_conf: %s", e)

    def configure(self, updated: set[str]) -> None:
        if "llm_conf" in updated and ctx.options.llm_conf != self.source:
            self.apply(ctx.options.llm_conf, set_by_user=updated - {"llm_conf"})

    def apply(self, name: str, set_by_user: AbstractSet[str] = frozenset()) -> None:
        """Apply `mitm.conf` and file `name` over it to the options nobody else set. What the
        previously applied files set is undone first, except where the option changed since or
        is in `set_by_user`."""
        self.source = name
        values = conf_values(name)
        options = ctx.options
        inherited = {
            key
            for key, value in self.applied.items()
            if key not in set_by_user and options._options[key].current() == value
        }
        updates: dict[str, Any] = {key: options.default(key) for key in inherited}
        applied: dict[str, Any] = {}
        for key, value in values.items():
            if key not in options:
                logger.debug("option %s does not exist here, skipped", key)
            elif key in inherited or (key not in set_by_user and not options.has_changed(key)):
                value = _as_text_option(options._options[key].typespec, value)
                updates[key] = applied[key] = value
        self.applied = applied
        options.update(**updates)

"""The proxy's environment: the process environment over a `.env` file.

`.env` holds `NAME=value` lines (`export` prefix, quotes and `#` comments allowed). Variables
already in the process environment win over the file, as with every dotenv loader.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path


def parse_dotenv(text: str) -> dict[str, str]:
    values: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export "):
            line = line[len("export ") :].lstrip()
        name, sep, value = line.partition("=")
        name = name.strip()
        if not sep or not name.replace("_", "").isalnum():
            continue
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
            value = value[1:-1]
        elif " #" in value:
            value = value.split(" #", 1)[0].rstrip()
        values[name] = value
    return values


def load_env(env_file: str | None, environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The merged environment: `.env` values under the process environment."""
    merged: dict[str, str] = {}
    if env_file:
        path = Path(env_file)
        if path.is_file():
            merged.update(parse_dotenv(path.read_text(encoding="utf-8")))
    merged.update(os.environ if environ is None else environ)
    return merged


_TRUE = frozenset({"1", "true", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off"})


def env_bool(env: Mapping[str, str], name: str, default: bool) -> bool:
    """A yes/no setting of the environment: `default` when unset or blank; a value that is
    none of true/false/1/0/yes/no/on/off is a ValueError naming the variable."""
    raw = env.get(name)
    if raw is None or not raw.strip():
        return default
    value = raw.strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise ValueError(f"{name} must be true/false/1/0/yes/no/on/off, got {raw[:40]!r}")

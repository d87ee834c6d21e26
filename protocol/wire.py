"""Small JSON helpers the OpenAI codecs (chat completions and Responses) share."""

from __future__ import annotations

import json
import uuid
from collections.abc import Container
from typing import Any, TypeGuard


def overlay(out: dict[str, Any], extras: dict[str, Any], markers: Container[str]) -> dict[str, Any]:
    """Adds the wire fields kept in `extras` that `out` does not already have (not the
    codec's own `markers`)."""
    for key, value in extras.items():
        if key not in out and key not in markers:
            out[key] = value
    return out


def rest(obj: dict[str, Any], known: Container[str]) -> dict[str, Any]:
    """The fields of `obj` a codec does not map (kept in `extras`)."""
    return {k: v for k, v in obj.items() if k not in known}


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]

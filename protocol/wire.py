"""JSON on the wire, and small JSON helpers the codecs share.

`loads`, `dumps` and `dumps_bytes` are what every request, answer and stream event goes
through: orjson (3-6x faster than the json module on the small objects of a stream), with the
json module for what orjson refuses, so results and errors stay json's: NaN and Infinity, an
integer beyond 64 bits, a lone surrogate, a body not in UTF-8. Written, NaN and Infinity (not
JSON, taken by no API) become null.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Container
from json.encoder import encode_basestring, encode_basestring_ascii
from typing import Any, TypeGuard

import orjson


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


def string_chars(value: Any, limit: int) -> int:
    """The characters of the strings in a parsed JSON value, one more for each (a separator a
    reader may join them with), counted until the total passes `limit`. No codec's text is
    longer than this: it is an upper bound of the text read out of an answer, paid one step per
    value instead of a parse."""
    total = 0
    stack = [value]
    pop, extend = stack.pop, stack.extend
    while stack:
        item = pop()
        kind = type(item)
        if kind is str:
            total += len(item) + 1
            if total > limit:
                break
        elif kind is dict:
            extend(item.values())
        elif kind is list:
            extend(item)
    return total


def is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def is_num(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


# 20 digits in a row may be an integer beyond 64 bits, which orjson reads as a float: such
# texts go to the json module. Found with two C passes (digits -> "0", the rest -> " ").
_DIGITS_AS_ZERO = bytes(0x30 if 0x30 <= b <= 0x39 else 0x20 for b in range(256))
_TWENTY_DIGITS = b"0" * 20


def loads(data: str | bytes | bytearray) -> Any:
    """`json.loads`, faster."""
    raw = data.encode("utf-8", "surrogatepass") if isinstance(data, str) else data
    if raw.translate(_DIGITS_AS_ZERO).find(_TWENTY_DIGITS) < 0:
        try:
            return orjson.loads(raw)
        except orjson.JSONDecodeError:
            pass
    return json.loads(data)


def dumps_bytes(obj: Any) -> bytes:
    """Compact JSON in UTF-8 (`ensure_ascii=False`); a lone surrogate is escaped."""
    try:
        return orjson.dumps(obj)
    except orjson.JSONEncodeError:
        try:
            return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
        except UnicodeEncodeError:
            return json.dumps(obj, separators=(",", ":")).encode()


def json_str(text: str) -> bytes:
    """`text` as a JSON string literal in UTF-8 (a lone surrogate escaped): the one value of
    a per-delta event, written without building a dict."""
    try:
        return encode_basestring(text).encode()
    except UnicodeEncodeError:
        return encode_basestring_ascii(text).encode()


def dumps(obj: Any) -> str:
    """Compact JSON text (`ensure_ascii=False`)."""
    try:
        return orjson.dumps(obj).decode()
    except orjson.JSONEncodeError:
        return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def copy_json(value: Any) -> Any:
    """A deep copy of parsed JSON (dicts, lists, scalars): several times faster than
    `copy.deepcopy`, which keeps a memo for shared and cyclic objects JSON cannot have."""
    if isinstance(value, dict):
        return {k: copy_json(v) if isinstance(v, dict | list) else v for k, v in value.items()}
    if isinstance(value, list):
        return [copy_json(v) if isinstance(v, dict | list) else v for v in value]
    return value


def new_id(prefix: str) -> str:
    return prefix + uuid.uuid4().hex[:24]

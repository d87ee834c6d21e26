"""A strict recursive checker of JSON values against the SDKs' TypedDict request types.

The OpenAI and Anthropic SDKs describe request bodies as TypedDicts. Pydantic can validate
those, but it checks `Iterable[...]` fields lazily, lets dicts through as the (extra-allowing)
response models some unions also list, and words union failures per branch. This checker walks
the type hints itself: every TypedDict is closed (unknown keys are issues, unless the TypedDict
declares `extra_items`), `Iterable`/`Sequence` mean a JSON array, numbers and booleans are not
coerced, and unions of TypedDicts are resolved by their literal discriminator (`type`, `role`
...) so an issue names the branch the body meant. Response models inside request unions are
ignored: an SDK accepts them as Python objects, never as JSON.

`check(tp, value)` returns the issues (empty when the value conforms); formatting them is the
caller's business (each API words them its own way).
"""

from __future__ import annotations

import collections.abc
import datetime
import enum
import types
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, Literal, Union, get_args, get_origin

import typing_extensions
from pydantic import BaseModel

PathItem = str | int
Path = tuple[PathItem, ...]
IssueKind = Literal["missing", "extra", "type", "value", "constraint"]


@dataclass(frozen=True, slots=True)
class Issue:
    """One way the body departs from the type: where, what kind, what was expected."""

    path: Path
    kind: IssueKind
    expected: str = ""
    got: object = None
    message: str = ""  # the whole sentence, for `constraint` issues


_LIST_ORIGINS: frozenset[object] = frozenset(
    {
        list,
        tuple,
        set,
        frozenset,
        collections.abc.Iterable,
        collections.abc.Sequence,
        collections.abc.MutableSequence,
        collections.abc.Collection,
        collections.abc.Set,
    }
)
_DICT_ORIGINS: frozenset[object] = frozenset(
    {dict, collections.abc.Mapping, collections.abc.MutableMapping}
)
_WRAPPERS: frozenset[object] = frozenset(
    {
        typing.Required,
        typing.NotRequired,
        typing_extensions.Required,
        typing_extensions.NotRequired,
        typing_extensions.ReadOnly,
    }
)
_NONE_TYPES: tuple[object, ...] = (None, type(None))


def json_kind(value: object) -> str:
    """The JSON type name of a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    if isinstance(value, dict):
        return "object"
    return type(value).__name__


def unwrap(tp: object) -> object:
    """`tp` without Annotated / Required / NotRequired / ReadOnly / type-alias layers."""
    try:
        return _unwrap_cached(tp)
    except TypeError:  # unhashable metadata somewhere: do it uncached
        return _unwrap(tp)


@cache
def _unwrap_cached(tp: object) -> object:
    return _unwrap(tp)


def _unwrap(tp: object) -> object:
    while True:
        origin = get_origin(tp)
        if origin is typing.Annotated or origin in _WRAPPERS:
            tp = get_args(tp)[0]
        elif isinstance(tp, typing.TypeAliasType):
            tp = tp.__value__
        elif isinstance(tp, typing.NewType):
            tp = tp.__supertype__
        else:
            return tp


def is_union(tp: object) -> bool:
    return get_origin(tp) in (Union, types.UnionType)


@cache
def _union_members(tp: object) -> tuple[object, ...]:
    members: list[object] = []
    for member in get_args(tp):
        member = unwrap(member)
        if is_union(member):
            members.extend(_union_members(member))
        else:
            members.append(member)
    return tuple(members)


def _is_list_type(tp: object) -> bool:
    origin = get_origin(tp)
    if origin in _LIST_ORIGINS or tp in _LIST_ORIGINS:
        return True
    # openai/anthropic `SequenceNotStr[str]` is a Protocol standing for "a list of str"
    target = origin if origin is not None else tp
    return getattr(target, "__name__", "") == "SequenceNotStr"


def _is_dict_type(tp: object) -> bool:
    return get_origin(tp) in _DICT_ORIGINS or tp in _DICT_ORIGINS


def _is_model(tp: object) -> bool:
    return isinstance(tp, type) and issubclass(tp, BaseModel)


def _is_typeddict(tp: object) -> bool:
    return typing_extensions.is_typeddict(tp)


@dataclass(frozen=True, slots=True)
class _Shape:
    fields: dict[str, object]
    required: frozenset[str]
    open: bool  # declares extra_items: unknown keys allowed


def _explicit_required(hint: object) -> bool | None:
    while True:
        origin = get_origin(hint)
        if origin in (typing.Required, typing_extensions.Required):
            return True
        if origin in (typing.NotRequired, typing_extensions.NotRequired):
            return False
        if origin in (typing.Annotated, typing_extensions.ReadOnly):
            hint = get_args(hint)[0]
            continue
        return None


def _owner(td: type, key: str) -> type:
    for base in getattr(td, "__orig_bases__", ()):
        if _is_typeddict(base) and key in getattr(base, "__annotations__", {}):
            return _owner(base, key)
    return td


@cache
def shape(td: type) -> _Shape:
    """The fields of a TypedDict, which are required, and whether it is open.

    `__required_keys__` cannot be trusted for classes written with `from __future__ import
    annotations` (the `Required[...]` markers are strings then), so requiredness is read from
    the resolved hints and, when unmarked, from the `total` of the class declaring the key.
    """
    hints = typing.get_type_hints(td, include_extras=True)
    required: set[str] = set()
    fields: dict[str, object] = {}
    for key, hint in hints.items():
        flag = _explicit_required(hint)
        if flag is None:
            flag = bool(getattr(_owner(td, key), "__total__", True))
        if flag:
            required.add(key)
        fields[key] = hint
    extra = getattr(td, "__extra_items__", typing_extensions.NoExtraItems)
    is_open = extra is not typing_extensions.NoExtraItems and not getattr(td, "__closed__", False)
    return _Shape(fields, frozenset(required), bool(is_open))


def describe(tp: object) -> str:
    """How an issue names what `tp` expects ("a string", "'user' or 'assistant'" ...)."""
    tp = unwrap(tp)
    if is_union(tp):
        words: list[str] = []
        for member in _union_members(tp):
            if _is_model(member):
                continue
            word = describe(member)
            if word not in words:
                words.append(word)
        return _join(words)
    if get_origin(tp) is Literal:
        return _join([repr(option) for option in get_args(tp)])
    if tp in _NONE_TYPES:
        return "null"
    if tp is str or tp in (datetime.datetime, datetime.date, bytes):
        return "a string"
    if tp is bool:
        return "a boolean"
    if tp is int:
        return "an integer"
    if tp is float:
        return "a number"
    if _is_list_type(tp):
        return "an array"
    if _is_dict_type(tp) or _is_typeddict(tp) or _is_model(tp):
        return "an object"
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return _join([repr(member.value) for member in tp])
    return "any value"


def _join(words: list[str]) -> str:
    if len(words) <= 1:
        return "".join(words)
    return ", ".join(words[:-1]) + " or " + words[-1]


@cache
def _accepts_kind(tp: object, kind: str) -> bool:
    """Whether a value of JSON `kind` could possibly be a `tp` (pre-filter for unions)."""
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return True
    if get_origin(tp) is Literal:
        return any(json_kind(option) == kind for option in get_args(tp)) or (
            kind == "number" and any(type(option) is float for option in get_args(tp))
        )
    if kind == "object":
        return _is_typeddict(tp) or _is_dict_type(tp) or _is_model(tp)
    if kind == "array":
        return _is_list_type(tp)
    if kind == "string":
        return (
            tp is str
            or tp in (datetime.datetime, datetime.date, bytes)
            or (isinstance(tp, type) and issubclass(tp, enum.Enum))
        )
    if kind == "integer":
        return tp in (int, float) or (isinstance(tp, type) and issubclass(tp, enum.Enum))
    if kind == "number":
        return tp is float
    if kind == "boolean":
        return tp is bool
    if kind == "null":
        return tp in _NONE_TYPES
    return False


# A plan is what `check` needs to know about a type, computed once per type object (keyed by
# identity: the hint objects live as long as the cached TypedDict shapes, and hashing a big
# `Literal[...]` on every call is what made a naive walk slow).
_Plan = tuple[str, object]
_plans: dict[int, tuple[object, _Plan]] = {}
_SCALAR = (str, int, float, bool)


def _plan(tp: object) -> _Plan:
    entry = _plans.get(id(tp))
    if entry is not None and entry[0] is tp:
        return entry[1]
    plan = _make_plan(tp)
    _plans[id(tp)] = (tp, plan)
    return plan


def _make_plan(raw: object) -> _Plan:
    tp = unwrap(raw)
    if tp is Any or tp is object or isinstance(tp, typing.TypeVar):
        return ("any", None)
    if is_union(tp):
        return ("union", _UnionInfo.of(list(_union_members(tp))))
    if tp in _NONE_TYPES:
        return ("none", None)
    if get_origin(tp) is Literal:
        pairs = frozenset((type(option), option) for option in get_args(tp))
        return ("literal", (pairs, describe(tp)))
    if tp in (str, bool, int, float):
        return (typing.cast(type, tp).__name__, None)
    if _is_typeddict(tp):
        return ("typeddict", tp)
    if _is_list_type(tp):
        args = get_args(tp)
        return ("list", args[0] if args else Any)
    if _is_dict_type(tp):
        args = get_args(tp)
        return ("dict", args[1] if len(args) == 2 else Any)
    if _is_model(tp):
        return ("model", None)
    if isinstance(tp, type) and issubclass(tp, enum.Enum):
        return ("enum", ([member.value for member in tp], describe(tp)))
    if tp in (datetime.datetime, datetime.date, bytes):
        return ("str", None)
    return ("any", None)  # a type JSON cannot spell (IO, PathLike ...): nothing to check


def check(tp: object, value: object, path: Path = ()) -> list[Issue]:
    """The issues of `value` (parsed JSON) against the type `tp`; empty when it conforms."""
    kind, data = _plan(tp)
    if kind == "str":
        return [] if isinstance(value, str) else [Issue(path, "type", "a string", value)]
    if kind == "typeddict":
        return _check_typeddict(typing.cast(type, data), value, path)
    if kind == "union":
        return _check_union(typing.cast(_UnionInfo, data), value, path)
    if kind == "literal":
        pairs, expected = typing.cast(tuple[frozenset[tuple[type, object]], str], data)
        if (value is None or isinstance(value, _SCALAR)) and (type(value), value) in pairs:
            return []
        return [Issue(path, "value", expected, value)]
    if kind == "list":
        if not isinstance(value, list):
            return [Issue(path, "type", "an array", value)]
        issues: list[Issue] = []
        for index, item in enumerate(value):
            issues.extend(check(data, item, (*path, index)))
        return issues
    if kind == "any":
        return []
    if kind == "none":
        return [] if value is None else [Issue(path, "type", "null", value)]
    if kind == "bool":
        return [] if isinstance(value, bool) else [Issue(path, "type", "a boolean", value)]
    if kind == "int":
        if isinstance(value, int) and not isinstance(value, bool):
            return []
        return [Issue(path, "type", "an integer", value)]
    if kind == "float":
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return []
        return [Issue(path, "type", "a number", value)]
    if kind == "dict":
        if not isinstance(value, dict):
            return [Issue(path, "type", "an object", value)]
        issues = []
        for key, item in value.items():
            issues.extend(check(data, item, (*path, key)))
        return issues
    if kind == "model":
        return [] if isinstance(value, dict) else [Issue(path, "type", "an object", value)]
    values, expected = typing.cast(tuple[list[object], str], data)  # enum
    if any(value == member for member in values):
        return []
    return [Issue(path, "value", expected, value)]


def _check_typeddict(td: type, value: object, path: Path) -> list[Issue]:
    if not isinstance(value, dict):
        return [Issue(path, "type", "an object", value)]
    info = shape(td)
    issues = [
        Issue((*path, key), "missing", describe(info.fields[key]))
        for key in info.fields
        if key in info.required and key not in value
    ]
    for key, item in value.items():
        hint = info.fields.get(key)
        if hint is None:
            if not info.open:
                issues.append(Issue((*path, key), "extra", "", item))
            continue
        issues.extend(check(hint, item, (*path, key)))
    return issues


@cache
def _literal_options(td: type, key: str) -> tuple[object, ...] | None:
    """The literal values a TypedDict allows for `key`, None when it is no literal field."""
    hint = shape(td).fields.get(key)
    if hint is None:
        return None
    hint = unwrap(hint)
    members = _union_members(hint) if is_union(hint) else [hint]
    options: list[object] = []
    for member in members:
        if member in _NONE_TYPES:
            continue
        if get_origin(member) is not Literal:
            return None
        options.extend(get_args(member))
    return tuple(options)


@dataclass(slots=True)
class _UnionInfo:
    members: list[object]
    expected: str  # the whole union described, models left out
    literal_only: bool
    by_kind: dict[str, tuple[list[object], list[object], list[object]]]

    @classmethod
    def of(cls, members: list[object]) -> _UnionInfo:
        plain = [member for member in members if not _is_model(member)] or members
        expected = _join(list(dict.fromkeys(describe(member) for member in plain)))
        literal_only = all(get_origin(member) is Literal for member in plain)
        return cls(members, expected, literal_only, {})

    def candidates(self, kind: str) -> tuple[list[object], list[object], list[object]]:
        """(all candidates, TypedDict candidates, other candidates) for a JSON kind."""
        found = self.by_kind.get(kind)
        if found is None:
            chosen = [member for member in self.members if _accepts_kind(member, kind)]
            if kind == "object" and any(
                _is_typeddict(member) or _is_dict_type(member) for member in chosen
            ):
                chosen = [member for member in chosen if not _is_model(member)]
            dicts = [member for member in chosen if _is_typeddict(member)]
            others = [member for member in chosen if not _is_typeddict(member)]
            found = self.by_kind[kind] = (chosen, dicts, others)
        return found


def _check_union(info: _UnionInfo, value: object, path: Path) -> list[Issue]:
    kind = json_kind(value)
    candidates, dicts, others = info.candidates(kind)
    if not candidates:
        return [Issue(path, "value" if info.literal_only else "type", info.expected, value)]
    if kind == "object" and len(dicts) > 1:
        assert isinstance(value, dict)
        narrowed = _discriminate(dicts, value, path)
        if isinstance(narrowed, Issue):
            if not others:
                return [narrowed]
            candidates = others
        else:
            candidates = [*narrowed, *others]
    best: list[Issue] | None = None
    for member in candidates:
        issues = check(member, value, path)
        if not issues:
            return []
        if best is None or len(issues) < len(best):
            best = issues
    assert best is not None
    if kind not in ("object", "array") and len(best) == 1 and best[0].path == path:
        # a scalar that fits no branch: say everything the field accepts
        return [Issue(path, best[0].kind, info.expected, value)]
    return best


@cache
def _discriminators(tds: tuple[object, ...]) -> tuple[tuple[str, tuple[type, ...]], ...]:
    """The literal fields shared by at least two of the TypedDicts, with those TypedDicts."""
    keys: list[str] = []
    for td in tds:
        assert isinstance(td, type)
        for key in shape(td).fields:
            if key not in keys and _literal_options(td, key) is not None:
                keys.append(key)
    plan: list[tuple[str, tuple[type, ...]]] = []
    for key in keys:
        typed = tuple(
            td for td in tds if isinstance(td, type) and _literal_options(td, key) is not None
        )
        if len(typed) >= 2:
            plan.append((key, typed))
    return tuple(plan)


def _discriminate(tds: list[object], value: dict[Any, Any], path: Path) -> list[object] | Issue:
    """Narrow TypedDict candidates by their literal discriminator fields (`type`, `role` ...)."""
    if len(tds) < 2:
        return tds
    for key, typed in _discriminators(tuple(tds)):
        if key in value:
            given = value[key]
            kept: list[object] = []
            for td in tds:
                assert isinstance(td, type)
                options = _literal_options(td, key)
                if options is None or any(
                    given == option and type(given) is type(option) for option in options
                ):
                    kept.append(td)
            if not kept:
                allowed: list[object] = []
                for td in typed:
                    assert isinstance(td, type)
                    for option in _literal_options(td, key) or ():
                        if option not in allowed:
                            allowed.append(option)
                return Issue(
                    (*path, key), "value", _join([repr(option) for option in allowed]), given
                )
            tds = kept
        else:
            without: list[object] = [
                td for td in tds if isinstance(td, type) and key not in shape(td).required
            ]
            if without:
                tds = without
        if len(tds) < 2:
            break
    return tds

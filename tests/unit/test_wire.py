"""JSON on the wire: orjson's speed, the json module's results and errors."""

from __future__ import annotations

import json
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocol.wire import dumps, dumps_bytes, loads

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)


@given(json_values)
def test_what_json_writes_reads_back_the_same(value: object) -> None:
    text = json.dumps(value, ensure_ascii=False)
    assert loads(text) == json.loads(text)
    assert loads(text.encode("utf-8", "surrogatepass")) == json.loads(
        text.encode("utf-8", "surrogatepass")
    )
    assert json.loads(dumps_bytes(value)) == value
    assert json.loads(dumps(value)) == value


@pytest.mark.parametrize(
    "text",
    [
        '{"t": NaN}',
        '{"big": 123456789012345678901234567890}',
        '"\\ud800"',  # a lone surrogate
        '{"x": 1e400}',
    ],
)
def test_what_orjson_refuses_is_read_as_json_reads_it(text: str) -> None:
    got, want = loads(text), json.loads(text)
    if isinstance(want, dict) and isinstance(want.get("t"), float):
        assert math.isnan(got["t"])
    else:
        assert got == want


def test_a_body_in_utf16_is_read_as_json_reads_it() -> None:
    assert loads('{"a": "é"}'.encode("utf-16")) == {"a": "é"}


def test_bad_json_raises_jsons_own_error() -> None:
    with pytest.raises(json.JSONDecodeError) as error:
        loads(b'{"a": ')
    assert "Expecting value" in str(error.value)


def test_writes_compact_utf8_and_escapes_a_lone_surrogate() -> None:
    assert dumps_bytes({"a": "é", "b": [1, 2]}) == '{"a":"é","b":[1,2]}'.encode()
    assert dumps({"a": "é"}) == '{"a":"é"}'
    assert dumps_bytes({"s": "\ud800"}) == b'{"s":"\\ud800"}'
    assert dumps_bytes({"n": 2**70}) == b'{"n":1180591620717411303424}'


def test_nan_and_infinity_are_written_as_null() -> None:
    """Not JSON, and no API takes them: null, as orjson writes them."""
    assert dumps_bytes([math.nan, math.inf, -math.inf]) == b"[null,null,null]"


@pytest.mark.parametrize("protocol", ["openai", "responses", "anthropic", "gemini"])
def test_every_stream_encoder_writes_a_lone_surrogate_escaped(protocol: str) -> None:
    """A model's text may hold half a surrogate pair: the event is still valid UTF-8 JSON."""
    from protocol.canonical import BlockStop, Finish, Start, TextDelta, Usage
    from protocol.codec import codec

    encoder = codec(protocol).encoder(model="m")
    events = [Start("id-1", "m", None), TextDelta(0, "a\ud800b"), BlockStop(0)]
    out = b"".join(encoder.feed(e) for e in events)
    out += encoder.feed(Finish("stop", Usage(), None)) + encoder.close()
    out.decode("utf-8")  # strict: raises on anything not UTF-8
    assert b"\\ud800" in out

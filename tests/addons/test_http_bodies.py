"""`body_bytes` and `replace_body`: the body read and replaced in one pass over the headers,
with the same result as mitmproxy's `content` property for every encoding case."""

from __future__ import annotations

import gzip

from mitmproxy import http

from addons._http import body_bytes, replace_body


def response(content: bytes, headers: dict[str, str]) -> http.Response:
    resp = http.Response.make(200, b"", headers)
    resp.raw_content = content
    return resp


def test_plain_body_is_read_as_it_is() -> None:
    resp = response(b'{"a":1}', {"content-type": "application/json"})
    assert body_bytes(resp) == resp.content == b'{"a":1}'


def test_encoded_body_is_decoded() -> None:
    resp = response(gzip.compress(b'{"a":1}'), {"content-encoding": "gzip"})
    assert body_bytes(resp) == b'{"a":1}'
    assert body_bytes(response(b"x", {"Content-Encoding": "identity"})) == b"x"


def test_replaced_body_gets_its_length_in_place() -> None:
    resp = response(b"old body", {"Content-Length": "8", "content-type": "application/json"})
    replace_body(resp, b"a longer new body")
    assert resp.raw_content == b"a longer new body"
    assert resp.headers.fields == (
        (b"Content-Length", b"17"),
        (b"content-type", b"application/json"),
    )


def test_replaced_body_without_a_length_gets_one() -> None:
    resp = response(b"old", {"content-type": "text/plain"})
    replace_body(resp, b"new!")
    assert resp.headers["content-length"] == "4"


def test_an_encoded_or_chunked_body_goes_through_mitmproxy_setter() -> None:
    resp = response(gzip.compress(b"old"), {"content-encoding": "gzip", "content-length": "23"})
    replace_body(resp, b"new body")
    assert resp.content == b"new body"  # encoded again, as the header says
    assert gzip.decompress(resp.raw_content or b"") == b"new body"
    assert resp.headers["content-length"] == str(len(resp.raw_content or b""))
    chunked = response(b"old", {"transfer-encoding": "chunked"})
    replace_body(chunked, b"new")
    assert chunked.raw_content == b"new" and "content-length" not in chunked.headers

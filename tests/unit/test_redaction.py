"""Secret redaction: patterns, configured keys, requests, stream and byte scrubbers, the stage.

Test secrets are assembled from pieces at run time (never whole in the source) so secret
scanners do not mistake them for leaked credentials; none of them is real.
"""

from __future__ import annotations

import json
from itertools import combinations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from protocol.canonical import (
    BlockStop,
    ChatRequest,
    Event,
    Finish,
    ImagePart,
    Message,
    ResponseAccumulator,
    Start,
    TextDelta,
    TextPart,
    ThinkingDelta,
    ThinkingPart,
    ToolArgsDelta,
    ToolCallPart,
    ToolCallStart,
    ToolResultPart,
    Usage,
)
from protocol.redaction import (
    REDACTED,
    SECRET_PATTERNS,
    BytesScrubber,
    RedactionStage,
    Redactor,
    StreamScrubber,
    pattern_settings,
)

R = REDACTED


def rep(unit: str, length: int) -> str:
    """`unit` repeated to exactly `length` characters."""
    return (unit * (length // len(unit) + 1))[:length]


OPENAI_KEY = "sk-" + "proj-" + rep("Zx9_Qw3-Lm7", 120)
OPENAI_LEGACY = "sk-" + rep("aB3dE6gH9jK2", 48)
OPENROUTER_KEY = "sk-" + "or-v1-" + rep("0a1b2c3d4e5f", 64)
ANTHROPIC_KEY = "sk-" + "ant-api03-" + rep("Qr8_tY2-uI5", 93) + "AA"
GOOGLE_KEY = "AI" + "za" + "Sy" + rep("Dk4-mN7_pQ1", 33)
AWS_KEY_ID = "AKIA" + "IOSFODNN7EXAMPLE"
AWS_TEMP_KEY_ID = "AS" + "IA" + "Y3FQ2ZK7MBN4WX5T"
GITHUB_TOKEN = "gh" + "p_" + rep("a1B2c3D4e5", 36)
GITHUB_PAT = "github" + "_pat_" + rep("11ABCDEFG0", 22) + "_" + rep("xYz123", 59)
SLACK_TOKEN = "xo" + "xb-" + "17653672481-19874698323-" + rep("pdFZKVeTuE8", 24)
STRIPE_KEY = "sk" + "_live_" + rep("51HxYz9AbC", 99)
STRIPE_RESTRICTED = "rk" + "_live_" + rep("51QwErTy7u", 24)
PEM_BODY = "\n".join(rep(f"MIIEow{i}AIBAAKCAQEA+/", 64) for i in range(6))
PEM_KEY = "-----BEGIN RSA " + "PRIVATE KEY-----\n" + PEM_BODY + "\n-----END RSA PRIVATE KEY-----"
PEM_OPENSSH = (
    "-----BEGIN OPENSSH " + "PRIVATE KEY-----\n" + PEM_BODY + "\n-----END OPENSSH PRIVATE KEY-----"
)

HITS = [
    ("openai", OPENAI_KEY),
    ("openai", OPENAI_LEGACY),
    ("openai", OPENROUTER_KEY),
    ("anthropic", ANTHROPIC_KEY),
    ("google_api_key", GOOGLE_KEY),
    ("aws_access_key_id", AWS_KEY_ID),
    ("aws_access_key_id", AWS_TEMP_KEY_ID),
    ("github_token", GITHUB_TOKEN),
    ("github_pat", GITHUB_PAT),
    ("slack_token", SLACK_TOKEN),
    ("stripe_live_key", STRIPE_KEY),
    ("stripe_live_key", STRIPE_RESTRICTED),
    ("private_key_pem", PEM_KEY),
    ("private_key_pem", PEM_OPENSSH),
]

LOOKALIKES = [
    "The task-manager-component-registry-v2 handles retries.",
    "pip install sk-learn-compatible-estimator-wrapper2 --upgrade",
    "def risk-assessment-2024-quarterly-report(): pass",
    "sk-short123",
    "const skLearnCompatibleEstimatorWrapper = new Wrapper(maxIterations2000);",
    "x = mask-" + "abcdefghijklmnopqrstuvwxyz0123",  # 'sk-' inside a word
    "AIza is how Google keys start, e.g. AIzaSyShort",
    "AKIA" + "IOSFODNN7EXAMPL is one character short",
    "AKIA" + "IOSFODNN7EXAMPLE1 is one character long",
    "aws region ASIA" + "PACIFICNORTHEAST1",
    "MYAKIA" + "IOSFODNN7EXAMPLE embedded in a longer token",
    "ghp_" + "shorttoken123",
    "the ghp_ prefix marks a personal access token",
    "github_pat_" + "tooShort",
    "xoxo-" + "gossip-girl-fanfiction-archive",
    "xoxb-" + "notanumber-abcdefghijk",
    "sk_test_" + rep("51HxYz9AbC", 30),  # Stripe test keys are not live keys
    "-----BEGIN PUBLIC KEY-----\n" + PEM_BODY + "\n-----END PUBLIC KEY-----",
    "-----BEGIN CERTIFICATE-----\n" + PEM_BODY + "\n-----END CERTIFICATE-----",
    "for (const [key, value] of Object.entries(skipWhitespaceTokensAndComments)) {}",
    "https://github.com/org/repo/blob/main/src/github_pat_handling.py",
]


def assert_no_fragment(text: str, *secrets: str, size: int = 8) -> None:
    for secret in secrets:
        for i in range(len(secret) - size + 1):
            assert secret[i : i + size] not in text, "a fragment of a secret was left"


# ----------------------------------------------------------------------------------------------
# Patterns
# ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("name", "secret"), HITS)
def test_each_pattern_hits_a_realistic_secret(name: str, secret: str) -> None:
    only = Redactor([], patterns={name: SECRET_PATTERNS[name]})
    text = f"my credentials:\n{secret}\nplease keep them safe"
    assert only.redact(text) == (f"my credentials:\n{R}\nplease keep them safe", 1)
    assert Redactor([]).redact(text) == (f"my credentials:\n{R}\nplease keep them safe", 1)


@pytest.mark.parametrize(("name", "secret"), HITS)
def test_a_disabled_pattern_leaves_its_secrets_alone(name: str, secret: str) -> None:
    text = f"key: {secret} end"
    assert Redactor([], disabled=[name]).redact(text) == (text, 0)


@pytest.mark.parametrize("text", LOOKALIKES)
def test_patterns_miss_lookalikes_in_prose_and_code(text: str) -> None:
    out, count = Redactor([]).redact(text)
    assert (out, count) == (text, 0)
    assert out is text


def test_secrets_in_code_and_json_contexts() -> None:
    text = (
        f'client = OpenAI(api_key="{OPENAI_KEY}")\n'
        f"export AWS_ACCESS_KEY_ID={AWS_KEY_ID}\n"
        f'{{"token": "{GITHUB_TOKEN}", "slack": "{SLACK_TOKEN}"}}\n'
        f"Authorization: Bearer {ANTHROPIC_KEY}\n"
    )
    out, count = Redactor([]).redact(text)
    assert count == 5
    assert out == (
        f'client = OpenAI(api_key="{R}")\n'
        f"export AWS_ACCESS_KEY_ID={R}\n"
        f'{{"token": "{R}", "slack": "{R}"}}\n'
        f"Authorization: Bearer {R}\n"
    )


def test_pem_in_a_json_string_and_a_truncated_pem() -> None:
    args = json.dumps({"path": "id_rsa", "content": PEM_KEY + "\n"})
    out, count = Redactor([]).redact(args)
    assert count == 1
    assert json.loads(out) == {"path": "id_rsa", "content": R + "\n"}
    truncated = (
        "here:\n-----BEGIN EC " + "PRIVATE KEY-----\n" + PEM_BODY + "\n\nthanks, that is all"
    )
    out, count = Redactor([]).redact(truncated)
    assert (out, count) == (f"here:\n{R}\n\nthanks, that is all", 1)


# ----------------------------------------------------------------------------------------------
# Configured keys
# ----------------------------------------------------------------------------------------------

KEY_LONG = "cfgkey-" + "Abc123Def456Ghi789"  # contains the next two
KEY_INNER = "Def456Ghi7"
KEY_PREFIX = "cfgkey-" + "Abc12"
KEYS = [KEY_INNER, KEY_PREFIX, KEY_LONG]


def test_configured_keys_longest_first_leave_no_fragment() -> None:
    redactor = Redactor(KEYS, patterns={})
    text = f"a {KEY_LONG} b {KEY_INNER} c {KEY_PREFIX} d {KEY_PREFIX}XYZ"
    out, count = redactor.redact(text)
    assert (out, count) == (f"a {R} b {R} c {R} d {R}XYZ", 4)
    assert_no_fragment(out, *KEYS, size=5)


def test_overlapping_keys_are_replaced_as_one_region() -> None:
    first, second = "Overlap1" + "AAAABBBB", "AAAABBBB" + "Overlap2"
    redactor = Redactor([first, second], patterns={})
    out, count = redactor.redact(f"x Overlap1AAAABBBBOverlap2 y {second}")
    assert (out, count) == (f"x {R} y {R}", 2)


def test_a_pattern_running_into_a_key_leaves_no_fragment_of_the_key() -> None:
    key = "Tail-part.Secret99"  # its start reads as more of the Anthropic key before it
    out, count = Redactor([key]).redact(f"token {ANTHROPIC_KEY}{key} end")
    assert (out, count) == (f"token {R} end", 1)


def test_short_and_empty_values_are_not_keys() -> None:
    redactor = Redactor(["", "dummy", "   ", "1234567"], patterns={})
    assert not redactor.active
    text = "dummy 1234567 is fine"
    assert redactor.redact(text) == (text, 0)


def test_keys_are_trimmed_and_matched_as_they_read_in_json() -> None:
    key = 'we"ird/Key\\1234'
    redactor = Redactor([f"  {key}\n"], patterns={})
    assert redactor.redact(f"raw {key} end") == (f"raw {R} end", 1)
    encoded = json.dumps({"k": key})
    assert redactor.redact(encoded) == (json.dumps({"k": R}), 1)
    assert redactor.redact(key.replace("/", "\\/")) == (R, 1)


def test_text_without_secrets_is_returned_as_is() -> None:
    redactor = Redactor([OPENAI_KEY, "plainkey-0000111122223333"])
    text = "def main() -> None:\n    print('hello')\n" * 100
    out, count = redactor.redact(text)
    assert out is text and count == 0


def test_keys_only_ignores_patterns_and_repr_shows_no_key() -> None:
    redactor = Redactor(["myproxykey-ABCDEF0123"])
    only = redactor.keys_only()
    assert only.pattern_names == ()
    assert only.redact(f"{AWS_KEY_ID} myproxykey-ABCDEF0123") == (f"{AWS_KEY_ID} {R}", 1)
    assert "ABCDEF0123" not in repr(redactor) and "ABCDEF0123" not in repr(only)


def test_many_keys_with_shared_prefixes() -> None:
    keys = [f"sk-proj-{i:04d}" + rep("QwErTy", 40) for i in range(100)]
    redactor = Redactor(keys, patterns={})
    text = " | ".join(keys[::7])
    out, count = redactor.redact(text)
    assert count == len(keys[::7])
    assert out == " | ".join([R] * count)


# ----------------------------------------------------------------------------------------------
# pattern_settings
# ----------------------------------------------------------------------------------------------


def test_pattern_settings_defaults_add_and_disable() -> None:
    assert pattern_settings(None) == SECRET_PATTERNS
    assert pattern_settings({}) == SECRET_PATTERNS
    got = pattern_settings(
        {"add": {"internal": r"itk_[A-Za-z0-9]{24}"}, "disable": ["slack_token", "github_pat"]}
    )
    assert set(got) == set(SECRET_PATTERNS) - {"slack_token", "github_pat"} | {"internal"}
    assert set(pattern_settings({"disable": "slack_token, github_pat"})) == set(SECRET_PATTERNS) - {
        "slack_token",
        "github_pat",
    }
    assert pattern_settings({"disable": ["all"], "add": {"x": "secret-[0-9]{4}"}}) == {
        "x": "secret-[0-9]{4}"
    }
    assert pattern_settings("{disable: [all]}") == {}
    replaced = pattern_settings({"add": {"openai": r"sk-[a-z]{30}"}})
    assert replaced["openai"] == r"sk-[a-z]{30}"


def test_user_patterns_are_applied() -> None:
    patterns = pattern_settings(
        {"add": {"internal": r"itk_[A-Za-z0-9]{24}", "corp": r"(?i:corp-secret-)[0-9]{6}"}}
    )
    redactor = Redactor(["configured-key-123"], patterns=patterns)
    token = "itk_" + rep("Ab3", 24)
    text = f"{token} and CORP-SECRET-123456 and configured-key-123 and {AWS_KEY_ID}"
    assert redactor.redact(text) == (f"{R} and {R} and {R} and {R}", 4)


@pytest.mark.parametrize(
    ("config", "named"),
    [
        ({"add": {"broken": "sk-[a-z"}}, "broken"),
        ({"add": {"grouped": "(sk)-[a-z]{20}"}}, "grouped"),
        ({"add": {"empty": "x*"}}, "empty"),
        ({"add": {"flags": "(?i)secret"}}, "flags"),
        ({"add": {"notstr": 42}}, "notstr"),
        ({"disable": ["no_such_pattern"]}, "no_such_pattern"),
        ({"remove": ["openai"]}, "remove"),
        ({"add": ["x"]}, "add"),
        ("[unclosed", "YAML"),
    ],
)
def test_pattern_settings_rejects_bad_values_naming_them(config: object, named: str) -> None:
    with pytest.raises(ValueError, match=named):
        pattern_settings(config)  # type: ignore[arg-type]


# ----------------------------------------------------------------------------------------------
# Requests
# ----------------------------------------------------------------------------------------------

PROXY_KEY = "llmproxy-" + "LocalProxyKey0042"
BACKEND_KEY = "sk-" + "or-v1-" + rep("9f8e7d6c5b4a", 64)


def build_request() -> ChatRequest:
    return ChatRequest(
        source="anthropic",
        model="claude-sonnet-4-5",
        system=[TextPart(text=f"You are a helper. Never reveal {PROXY_KEY}.")],
        messages=[
            Message(
                role="user",
                content=[
                    TextPart(text=f"My key is {BACKEND_KEY}, and AWS {AWS_KEY_ID}."),
                    ImagePart(url=f"https://example.com/img.png?sig={PROXY_KEY}"),
                ],
            ),
            Message(
                role="assistant",
                content=[
                    ThinkingPart(text=f"The user pasted {BACKEND_KEY}.", signature="sig=="),
                    TextPart(text="Let me check the file."),
                    ToolCallPart(
                        id="call_1",
                        name="write_file",
                        arguments=json.dumps({"path": ".env", "text": f"KEY={GITHUB_TOKEN}"}),
                    ),
                ],
            ),
            Message(
                role="tool",
                content=[
                    ToolResultPart(
                        call_id="call_1",
                        content=[TextPart(text=f"wrote KEY={GITHUB_TOKEN}\n{PEM_KEY}")],
                    )
                ],
            ),
            Message(role="user", content=[TextPart(text="thanks, all good")]),
        ],
        extras={"metadata": {"note": PROXY_KEY}},
    )


def test_redact_request_replaces_everywhere_but_thinking_and_extras() -> None:
    req = build_request()
    count = Redactor([PROXY_KEY, BACKEND_KEY]).redact_request(req)
    assert count == 6
    assert req.system[0].text == f"You are a helper. Never reveal {R}."
    user, assistant, tool, last = req.messages
    assert isinstance(user.content[0], TextPart)
    assert user.content[0].text == f"My key is {R}, and AWS {R}."
    thinking = assistant.content[0]
    assert isinstance(thinking, ThinkingPart)
    assert thinking.text == f"The user pasted {BACKEND_KEY}." and thinking.signature == "sig=="
    call = assistant.content[2]
    assert isinstance(call, ToolCallPart)
    assert json.loads(call.arguments) == {"path": ".env", "text": f"KEY={R}"}
    result = tool.content[0]
    assert isinstance(result, ToolResultPart) and isinstance(result.content[0], TextPart)
    assert result.content[0].text == f"wrote KEY={R}\n{R}"
    assert last.content[0] == TextPart(text="thanks, all good")
    assert req.extras == {"metadata": {"note": PROXY_KEY}}
    dumped = req.model_dump_json()
    assert dumped.count(PROXY_KEY) == 2  # the image URL and extras, left alone on purpose
    assert GITHUB_TOKEN not in dumped and AWS_KEY_ID not in dumped


def test_redact_request_with_nothing_to_redact() -> None:
    req = ChatRequest(
        source="openai",
        model="gpt-4o",
        messages=[Message(role="user", content=[TextPart(text="hi")])],
    )
    before = req.model_dump()
    assert Redactor([PROXY_KEY]).redact_request(req) == 0
    assert Redactor([], patterns={}).redact_request(req) == 0
    assert req.model_dump() == before


def test_tool_arguments_stay_valid_json_when_a_match_spans_strings() -> None:
    args = json.dumps(
        {"a": "-----BEGIN RSA " + "PRIVATE KEY-----", "b": "x -----END RSA PRIVATE KEY----- y"}
    )
    req = ChatRequest(
        source="openai",
        model="gpt-4o",
        messages=[
            Message(
                role="assistant",
                content=[ToolCallPart(id="c", name="f", arguments=args)],
            )
        ],
    )
    assert Redactor([]).redact_request(req) == 1
    call = req.messages[0].content[0]
    assert isinstance(call, ToolCallPart)
    assert json.loads(call.arguments) == {"a": R, "b": "x -----END RSA PRIVATE KEY----- y"}


# ----------------------------------------------------------------------------------------------
# StreamScrubber
# ----------------------------------------------------------------------------------------------

STREAM_KEYS = [BACKEND_KEY, PROXY_KEY, KEY_LONG, KEY_INNER, KEY_PREFIX]


def scrub(pieces: list[str], redactor: Redactor) -> tuple[str, int]:
    scrubber = StreamScrubber(redactor)
    out = "".join(scrubber.feed(p) for p in pieces) + scrubber.flush()
    return out, scrubber.count


@pytest.mark.parametrize("key", [BACKEND_KEY, PROXY_KEY, KEY_LONG, KEY_INNER, KEY_PREFIX])
def test_stream_key_split_at_every_position_in_two_and_three_pieces(key: str) -> None:
    redactor = Redactor(STREAM_KEYS).keys_only()
    text = f"see {key}! ok"
    expected = f"see {R}! ok"
    for i in range(len(text) + 1):
        assert scrub([text[:i], text[i:]], redactor) == (expected, 1)
    for i, j in combinations(range(len(text) + 1), 2):
        assert scrub([text[:i], text[i:j], text[j:]], redactor) == (expected, 1)


def test_stream_key_fed_one_character_at_a_time() -> None:
    redactor = Redactor(STREAM_KEYS).keys_only()
    text = f"a {BACKEND_KEY} b {KEY_LONG}{KEY_PREFIX} c"
    assert scrub(list(text), redactor) == (f"a {R} b {R}{R} c", 3)


@settings(max_examples=300, deadline=None)
@given(
    words=st.lists(
        st.sampled_from(STREAM_KEYS + ["s", "sk-", "cfg", "key-", "Abc1", " ", "\n", "llm", "é"]),
        max_size=30,
    ),
    cuts=st.lists(st.integers(min_value=0, max_value=400), max_size=8),
)
def test_stream_output_equals_whole_text_redaction(words: list[str], cuts: list[int]) -> None:
    redactor = Redactor(STREAM_KEYS).keys_only()
    text = "".join(words)
    bounds = sorted({min(c, len(text)) for c in cuts})
    pieces = [text[a:b] for a, b in zip([0, *bounds], [*bounds, len(text)], strict=True)]
    assert scrub(pieces, redactor) == redactor.redact(text)
    raw = text.encode()
    byte_bounds = sorted({min(c, len(raw)) for c in cuts})
    edges = zip([0, *byte_bounds], [*byte_bounds, len(raw)], strict=True)
    byte_pieces = [raw[a:b] for a, b in edges if b > a]  # b"" means the end of the stream
    out, count = redactor.redact(text)
    assert scrub_bytes(byte_pieces, redactor) == (out.encode(), count)


def test_stream_with_patterns_holds_a_match_touching_the_end() -> None:
    scrubber = StreamScrubber(Redactor([PROXY_KEY]))
    assert scrubber.feed("aws " + AWS_KEY_ID) == "aws "
    assert scrubber.feed(" ok") == f"{R} ok"
    assert scrubber.count == 1


def test_stream_text_without_keys_is_not_held_back() -> None:
    redactor = Redactor(STREAM_KEYS).keys_only()
    scrubber = StreamScrubber(redactor)
    for piece in ["Hello, ", "this is a normal ", "answer with code:\n", "print(42)\n"]:
        assert scrubber.feed(piece) is piece
    assert scrubber.flush() == ""
    assert scrubber.count == 0


def test_stream_holds_only_a_possible_key_start() -> None:
    redactor = Redactor(STREAM_KEYS).keys_only()
    scrubber = StreamScrubber(redactor)
    assert scrubber.feed("the prefix cfgkey-Ab") == "the prefix "
    assert scrubber.feed("out") == "cfgkey-About"
    assert scrubber.feed("then llmproxy-") == "then "
    assert scrubber.flush() == "llmproxy-"
    assert scrubber.count == 0


def test_stream_empty_pieces_keep_what_is_held() -> None:
    redactor = Redactor([PROXY_KEY], patterns={})
    scrubber = StreamScrubber(redactor)
    assert scrubber.feed("x " + PROXY_KEY[:5]) == "x "
    assert scrubber.feed("") == ""
    assert scrubber.feed(PROXY_KEY[5:] + " y") == f"{R} y"
    assert scrubber.count == 1


def test_stream_without_configured_keys_passes_everything() -> None:
    scrubber = StreamScrubber(Redactor([], patterns={}))
    assert scrubber.feed("sk-") == "sk-"
    assert scrubber.flush() == ""


# ----------------------------------------------------------------------------------------------
# BytesScrubber
# ----------------------------------------------------------------------------------------------


def scrub_bytes(pieces: list[bytes], redactor: Redactor) -> tuple[bytes, int]:
    scrubber = BytesScrubber(redactor)
    out = b"".join(scrubber.feed(p) for p in pieces) + scrubber.feed(b"")
    return out, scrubber.count


def sse(text: str) -> bytes:
    chunk = {"choices": [{"index": 0, "delta": {"content": text}}]}
    return f"data: {json.dumps(chunk)}\n\n".encode()


def test_bytes_key_split_at_every_position_in_two_and_three_pieces() -> None:
    redactor = Redactor(STREAM_KEYS)
    data = sse("a ") + sse(f"key {PROXY_KEY} end") + b"data: [DONE]\n\n"
    expected = sse("a ") + sse(f"key {R} end") + b"data: [DONE]\n\n"
    for i in range(len(data) + 1):
        assert scrub_bytes([data[:i], data[i:]], redactor) == (expected, 1)
    start = data.index(PROXY_KEY.encode()) - 3
    span = range(start, start + len(PROXY_KEY) + 6)
    for i, j in combinations(span, 2):
        assert scrub_bytes([data[:i], data[i:j], data[j:]], redactor) == (expected, 1)


def test_bytes_keys_as_json_escapes_them_and_no_holdback_without_keys() -> None:
    key = "slash/Key/0123456789"
    redactor = Redactor([key])
    escaped = b'data: {"t": "slash\\/Key\\/0123456789"}\n\n'
    assert scrub_bytes([escaped[:20], escaped[20:]], redactor) == (
        b'data: {"t": "' + R.encode() + b'"}\n\n',
        1,
    )
    scrubber = BytesScrubber(redactor)
    plain = sse("nothing secret here")
    assert scrubber.feed(plain) is plain
    assert scrubber.flush() == b""


def test_bytes_scrubber_ignores_patterns() -> None:
    data = sse(f"aws {AWS_KEY_ID}")
    assert scrub_bytes([data], Redactor([PROXY_KEY])) == (data, 0)


# ----------------------------------------------------------------------------------------------
# RedactionStage
# ----------------------------------------------------------------------------------------------


def run_stage(stage: RedactionStage, events: list[Event]) -> list[Event]:
    out: list[Event] = []
    for event in events:
        out.extend(stage.feed(event))
    out.extend(stage.close())
    return out


def test_stage_scrubs_a_realistic_stream() -> None:
    key = BACKEND_KEY
    plain = TextDelta(1, "Sure. ")
    events: list[Event] = [
        Start("msg_1", "claude-sonnet-4-5", Usage(input_tokens=50)),
        ThinkingDelta(0, f"The key {key[:10]}"),
        ThinkingDelta(0, f"{key[10:]} must not leak."),
        ThinkingDelta(0, "", "signature=="),
        BlockStop(0),
        plain,
        TextDelta(1, f"Your key {key[:30]}"),
        TextDelta(1, f"{key[30:]} is set. Use {PROXY_KEY[:4]}"),
        BlockStop(1),
        ToolCallStart(2, "toolu_1", "bash", None),
        ToolArgsDelta(2, '{"cmd": "export K=' + key[:50]),
        ToolArgsDelta(2, key[50:] + '"}'),
        BlockStop(2),
        Finish("tool_use", Usage(output_tokens=80)),
    ]
    stage = RedactionStage(Redactor([key, PROXY_KEY]).keys_only())
    out = run_stage(stage, events)
    assert stage.count == 3
    acc = ResponseAccumulator(source="anthropic")
    for event in out:
        acc.feed(event)
    resp = acc.response()
    thinking, text, call = resp.parts
    assert isinstance(thinking, ThinkingPart)
    assert thinking.text == f"The key {R} must not leak." and thinking.signature == "signature=="
    assert text == TextPart(text=f"Sure. Your key {R} is set. Use {PROXY_KEY[:4]}")
    assert isinstance(call, ToolCallPart)
    assert json.loads(call.arguments) == {"cmd": f"export K={R}"}
    assert resp.stop_reason == "tool_use" and resp.usage.output_tokens == 80
    # Events with nothing to change are passed on as they are.
    for original in (events[0], plain, events[4], events[9], events[-1]):
        assert any(e is original for e in out)
    # Held text comes out before its block's stop.
    stop1 = next(i for i, e in enumerate(out) if isinstance(e, BlockStop) and e.index == 1)
    assert out[stop1 - 1] == TextDelta(1, PROXY_KEY[:4])


def test_stage_flushes_before_finish_and_at_close() -> None:
    stage = RedactionStage(Redactor([PROXY_KEY], patterns={}))
    assert stage.feed(TextDelta(0, "tail " + PROXY_KEY[:3])) == [TextDelta(0, "tail ")]
    finish = Finish("end", None)
    assert stage.feed(finish) == [TextDelta(0, PROXY_KEY[:3]), finish]
    assert stage.feed(TextDelta(1, PROXY_KEY[:6])) == []
    assert stage.close() == [TextDelta(1, PROXY_KEY[:6])]


def test_stage_cheap_path_returns_the_same_event() -> None:
    stage = RedactionStage(Redactor([PROXY_KEY], patterns={}))
    events: list[Event] = [
        Start("id", "m"),
        TextDelta(0, "hello world"),
        ThinkingDelta(1, "opaque", None, True),
        ToolCallStart(2, "c", "f"),
        ToolArgsDelta(2, '{"a": 1}'),
        BlockStop(2),
    ]
    for event in events:
        out = stage.feed(event)
        assert len(out) == 1 and out[0] is event
    inactive = RedactionStage(Redactor([], patterns={}))
    delta = TextDelta(0, "sk-")
    assert inactive.feed(delta)[0] is delta and inactive.count == 0


def test_stage_leaves_redacted_thinking_alone() -> None:
    stage = RedactionStage(Redactor([PROXY_KEY], patterns={}))
    event = ThinkingDelta(0, f"encrypted {PROXY_KEY}", None, True)
    assert stage.feed(event) == [event]
    assert stage.count == 0

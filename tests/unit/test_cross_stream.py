"""Cross-protocol stream cases found end to end, pinned at the codec level."""

from protocol import anthropic, gemini
from protocol.canonical import ChatRequest, TextDelta, ThinkingDelta
from protocol.exchange import Exchange, Front
from protocol.pipeline import StreamPipeline

# Gemini puts the thought signature on the last part of the answer text, after the thoughts.
GEMINI_STREAM = b"".join(
    b"data: " + line + b"\r\n\r\n"
    for line in (
        b'{"candidates":[{"content":{"parts":[{"text":"Let me ","thought":true}],"role":"model"}}],"responseId":"r1","modelVersion":"gemini-2.5-pro"}',
        b'{"candidates":[{"content":{"parts":[{"text":"think.","thought":true}],"role":"model"}}]}',
        b'{"candidates":[{"content":{"parts":[{"text":"4"}],"role":"model"}}]}',
        b'{"candidates":[{"content":{"parts":[{"text":"2.","thoughtSignature":"c2ln"}],"role":"model"},"finishReason":"STOP"}],"usageMetadata":{"promptTokenCount":5,"candidatesTokenCount":3,"totalTokenCount":8}}',
    )
)


def test_gemini_signature_on_answer_text_keeps_the_text_one_block() -> None:
    decoder = gemini.StreamDecoder()
    events = decoder.feed(GEMINI_STREAM) + decoder.close()
    text_blocks = {e.index for e in events if isinstance(e, TextDelta)}
    assert len(text_blocks) == 1
    sigs = [e for e in events if isinstance(e, ThinkingDelta) and e.signature]
    assert [s.signature for s in sigs] == ["c2ln"]


def test_anthropic_client_of_a_gemini_stream_sees_thinking_then_text() -> None:
    ex = Exchange(
        front=Front(protocol="anthropic", client_stream=True),
        request=ChatRequest(source="anthropic", model="m"),
        raw={},
        requested_model="m",
        backend_protocol="gemini",
    )
    pipe = StreamPipeline(gemini.StreamDecoder(), anthropic.StreamEncoder(), ex)
    out = b"".join(bytes(pipe(GEMINI_STREAM[i : i + 7])) for i in range(0, len(GEMINI_STREAM), 7))
    out += bytes(pipe(b""))
    starts = [line for line in out.split(b"\n") if b'"content_block_start"' in line]
    assert len(starts) == 2
    assert b'"type":"thinking"' in starts[0] and b'"type":"text"' in starts[1]
    assert out.rstrip().endswith(b'data: {"type":"message_stop"}')
    assert ex.outcome == "ok" and ex.usage.input_tokens == 5

"""The conversation text the mitmweb view shows: every kind of part, route, outcome."""

from protocol.canonical import (
    ChatRequest,
    ChatResponse,
    ImagePart,
    Message,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
    Usage,
)
from protocol.conversation_text import MAX_TEXT, render_request, render_response
from protocol.exchange import Attempt, Exchange, Front, RoutePlan


def exchange() -> Exchange:
    req = ChatRequest(
        source="anthropic",
        model="m",
        system=[TextPart(text="Be brief.")],
        messages=[
            Message(role="user", content=[TextPart(text="x" * (MAX_TEXT + 500)),
                                          ImagePart(data="aGk=", media_type="image/png")]),
            Message(role="assistant", content=[ToolCallPart(id="c1", name="f", arguments='{"a":1}')]),
            Message(role="tool", content=[ToolResultPart(call_id="c1", content=[TextPart(text="ok")],
                                                         is_error=True)]),
        ],
        temperature=0.3,
    )
    ex = Exchange(front=Front(protocol="anthropic", client_stream=True), request=req, raw={},
                  requested_model="anthropic:m",
                  route=RoutePlan([Attempt("anthropic", "m", "ANTHROPIC_API_KEY")]))
    ex.answer = ChatResponse(source="anthropic", id="1", model="m",
                             parts=[ThinkingPart(text="hmm"), TextPart(text="done")])
    ex.usage, ex.usage_source, ex.outcome, ex.status = Usage(input_tokens=5, output_tokens=2), "upstream", "ok", 200
    return ex


def test_request_side() -> None:
    text = render_request(exchange())
    assert "attempt 1: anthropic:m key ANTHROPIC_API_KEY" in text
    assert "SYSTEM:\n    Be brief." in text
    assert "[... 500 characters ...]" in text
    assert "[image: image/png, 4 base64 chars]" in text
    assert "-> tool call f (c1): {\"a\":1}" in text
    assert "<- tool result for c1 (error): ok" in text
    assert '"temperature": 0.3' in text


def test_response_side() -> None:
    text = render_response(exchange())
    assert "[thinking]\n    hmm\n    done" in text
    assert "ok, status 200" in text and "tokens: in 5, out 2" in text


def test_the_clients_own_request_is_shown_with_its_secrets_redacted() -> None:
    from protocol.redaction import Redactor

    key = "sk-ant-api03-" + "k" * 40
    ex = exchange()
    ex.raw = {"model": "m", "messages": [{"role": "user", "content": f"my key {key}"}]}
    ex.client_line = "POST http://127.0.0.1:8000/anthropic/v1/messages"
    ex.redactor = Redactor([key])
    text = render_request(ex)
    assert "== the client's request ==\nPOST http://127.0.0.1:8000/anthropic/v1/messages" in text
    assert '"content": "my key (API_KEY_HAS_BEEN_REDACTED)"' in text
    assert key not in text

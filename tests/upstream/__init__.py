"""A strict local stand-in for the four backend APIs (OpenAI, OpenRouter, Anthropic, Gemini).

Tests script it (`Upstream`, `Reply`, `ToolCall`, `Usage`) and point the gateway or the
official SDKs at it; it answers in each API's exact wire format and refuses, with the API's
own 400, every body the real API would refuse. See `script.py` for the test-facing object,
`server.py` for the HTTP side, `validate.py` for strictness, `render.py` for the formats.
"""

from tests.upstream.reply import DEFAULT_TEXT, Reply, ToolCall, Usage
from tests.upstream.script import Upstream
from tests.upstream.server import API_ROOTS, BACKENDS, SDK_ROOTS, RecordedRequest

__all__ = [
    "API_ROOTS",
    "BACKENDS",
    "DEFAULT_TEXT",
    "SDK_ROOTS",
    "RecordedRequest",
    "Reply",
    "ToolCall",
    "Upstream",
    "Usage",
]

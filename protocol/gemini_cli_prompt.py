"""The prompt the Gemini CLI backend sends: a whole `ChatRequest` rendered as one text.

The Gemini CLI takes a single prompt per run and keeps no memory between runs, so every run gets
the whole conversation. The format:

- A request that is only one user message (no system prompt, no history) is passed as it is:
  the CLI sees exactly what the user typed.
- Anything else becomes a transcript. It opens with one line saying what it is, then each entry
  as a role label on its own line followed by its content, entries separated by a blank line::

      The conversation so far follows. Reply to the last USER message as the ASSISTANT.

      SYSTEM:
      You are terse.

      USER:
      What is in a.txt?

      ASSISTANT:
      [tool call read_file (id call_1): {"path": "a.txt"}]

      TOOL RESULT (read_file, id call_1):
      hello

      USER:
      Thanks. And b.txt?

  The system prompt comes first; entries appear in the order of the conversation, so the text
  ends with the last message (normally the user's).
- Parts that are not text are written as readable notes: tool calls as
  `[tool call NAME (id ID): ARGUMENTS]`, tool results as their text under a `TOOL RESULT` label
  (with `, error` when the tool failed), images as `[image: URL]` or `[image: MEDIA_TYPE, inline
  data not shown]` (the CLI gets no image bytes), blocks of another protocol as `[... block
  omitted]`. Thinking parts are left out: they are the earlier model's private reasoning.
- The client's tool definitions are not rendered: the CLI answers in text and cannot call the
  client's tools.
"""

from __future__ import annotations

from protocol.canonical import (
    ChatRequest,
    ImagePart,
    Message,
    OpaquePart,
    Part,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

PREAMBLE = "The conversation so far follows. Reply to the last USER message as the ASSISTANT."


def _image_note(part: ImagePart) -> str:
    if part.url:
        return f"[image: {part.url}]"
    return f"[image: {part.media_type or 'unknown type'}, inline data not shown]"


def _result_text(part: ToolResultPart) -> str:
    pieces = [p.text if isinstance(p, TextPart) else _image_note(p) for p in part.content]
    return "\n".join(pieces)


def _part_text(part: Part, call_names: dict[str, str]) -> str | None:
    """One part as text (None to leave it out). Tool results are handled by the caller."""
    if isinstance(part, TextPart):
        return part.text
    if isinstance(part, ImagePart):
        return _image_note(part)
    if isinstance(part, ToolCallPart):
        call_names[part.id] = part.name
        return f"[tool call {part.name} (id {part.id}): {part.arguments}]"
    if isinstance(part, ThinkingPart):
        return None
    if isinstance(part, OpaquePart):
        kind = part.data.get("type", "content")
        return f"[{part.protocol} {kind} block omitted]"
    return None


def _entries(message: Message, call_names: dict[str, str]) -> list[tuple[str, str]]:
    """(label, body) pairs for one message: tool results become entries of their own."""
    label = message.role.upper()
    out: list[tuple[str, str]] = []
    body: list[str] = []
    for part in message.content:
        if isinstance(part, ToolResultPart):
            if body:
                out.append((label, "\n".join(body)))
                body = []
            name = part.name or call_names.get(part.call_id, "")
            where = f"{name}, id {part.call_id}" if name else f"id {part.call_id}"
            flag = ", error" if part.is_error else ""
            out.append((f"TOOL RESULT ({where}{flag})", _result_text(part)))
            continue
        text = _part_text(part, call_names)
        if text is not None:
            body.append(text)
    if body or not out:
        out.append((label, "\n".join(body)))
    return out


def render_prompt(req: ChatRequest) -> str:
    """The whole conversation of `req` as the one prompt text the CLI gets (format above)."""
    system = req.system_text()
    messages = req.messages
    if not system and len(messages) == 1 and messages[0].role == "user":
        only = messages[0]
        if all(isinstance(p, TextPart) for p in only.content):
            return only.text()
    call_names: dict[str, str] = {}
    blocks = [PREAMBLE]
    if system:
        blocks.append(f"SYSTEM:\n{system}")
    for message in messages:
        for label, body in _entries(message, call_names):
            blocks.append(f"{label}:\n{body}")
    return "\n\n".join(blocks)

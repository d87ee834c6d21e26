"""Offline token counting with tiktoken and the BPE files shipped in `tokenizer_data/`.

tiktoken downloads its BPE files on first use; this module points tiktoken's cache at the
package's own copies (named by tiktoken's cache key, the sha1 of the download URL), so nothing
here reaches the network. tiktoken still checks each file against its expected sha256.

Counts for non-OpenAI models use `o200k_base` as an estimate; callers record them as `counted`.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path

import tiktoken

from protocol.canonical import (
    ChatRequest,
    ImagePart,
    OpaquePart,
    TextPart,
    ThinkingPart,
    ToolCallPart,
    ToolResultPart,
)

DATA_DIR = Path(__file__).with_name("tokenizer_data")
_LOCK = threading.Lock()
_ENCODINGS: dict[str, tiktoken.Encoding] = {}

# Tokens a chat format adds per message and per reply (OpenAI's documented accounting).
PER_MESSAGE = 3
PER_REPLY = 3
# A flat estimate per image: the real cost depends on size and provider.
PER_IMAGE = 765


def encoding(name: str = "o200k_base") -> tiktoken.Encoding:
    """The named encoding (`o200k_base` or `cl100k_base`), built from the shipped files."""
    enc = _ENCODINGS.get(name)
    if enc is not None:
        return enc
    with _LOCK:
        enc = _ENCODINGS.get(name)
        if enc is None:
            previous = os.environ.get("TIKTOKEN_CACHE_DIR")
            os.environ["TIKTOKEN_CACHE_DIR"] = str(DATA_DIR)
            try:
                enc = tiktoken.get_encoding(name)
            finally:
                if previous is None:
                    os.environ.pop("TIKTOKEN_CACHE_DIR", None)
                else:
                    os.environ["TIKTOKEN_CACHE_DIR"] = previous
            _ENCODINGS[name] = enc
    return enc


def encoding_for_model(model: str) -> tiktoken.Encoding:
    """cl100k_base for the GPT-4/3.5 generation, o200k_base for everything else."""
    bare = model.rsplit("/", 1)[-1].lower()
    legacy = bare.startswith(("gpt-4-", "gpt-3.5", "gpt-35")) or bare == "gpt-4"
    return encoding("cl100k_base" if legacy else "o200k_base")


def count_text(text: str, model: str = "") -> int:
    if not text:
        return 0
    return len(encoding_for_model(model).encode(text, disallowed_special=()))


def count_request(req: ChatRequest) -> int:
    """Estimated input tokens of a whole request: system, messages, tools."""
    enc = encoding_for_model(req.model)

    def n(text: str) -> int:
        return len(enc.encode(text, disallowed_special=())) if text else 0

    total = PER_REPLY
    if req.system:
        total += PER_MESSAGE + n(req.system_text())
    for message in req.messages:
        total += PER_MESSAGE
        for part in message.content:
            if isinstance(part, TextPart):
                total += n(part.text)
            elif isinstance(part, ThinkingPart):
                total += 0 if part.redacted else n(part.text)
            elif isinstance(part, ToolCallPart):
                total += n(part.name) + n(part.arguments)
            elif isinstance(part, ToolResultPart):
                for item in part.content:
                    total += n(item.text) if isinstance(item, TextPart) else PER_IMAGE
            elif isinstance(part, ImagePart):
                total += PER_IMAGE
            elif isinstance(part, OpaquePart):
                total += n(json.dumps(part.data))
    for tool in req.tools:
        total += n(tool.name) + n(tool.description or "") + n(json.dumps(tool.parameters))
    return total

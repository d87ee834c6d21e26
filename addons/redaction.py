"""Redaction addon: secrets never leave the proxy in a prompt, nor reach a client in an answer.

At `request` (after the commands, before routing) every configured key value (all backends'
keys, the proxy's own) and the enabled secret shapes (`protocol.redaction.SECRET_PATTERNS`, as
`llm_redaction_patterns` adds or turns off) are replaced with `(API_KEY_HAS_BEEN_REDACTED)` in
the canonical request: system prompt, messages, tool-call arguments and tool results. The
count goes on the exchange (usage row, log line); the secrets never do.

Answers: the responses addon scrubs configured key values out of what the backend sends back
(whole bodies, converted streams through a `RedactionStage`, byte-for-byte streams through a
`BytesScrubber`), with the `answer_scrubber` set here.

On by default; off globally with `redact_api_keys_in_prompts` (option, or env
`REDACT_API_KEYS_IN_PROMPTS=false` when the option is left alone), per session with
`!/set(redact-api-keys-in-prompts=false)`. Answers are scrubbed whatever the setting.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, exceptions, http
from mitmproxy.addonmanager import Loader

from addons.config import Config
from protocol.env import env_bool
from protocol.exchange import exchange_of
from protocol.redaction import Redactor, pattern_settings

logger = logging.getLogger(__name__)


class Redaction:
    def __init__(self, config: Config) -> None:
        self.config = config
        self.redactor = Redactor([])
        self.enabled = True

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "redact_api_keys_in_prompts",
            bool,
            True,
            "Replace configured keys and secret shapes in prompts with "
            "(API_KEY_HAS_BEEN_REDACTED) (env REDACT_API_KEYS_IN_PROMPTS).",
        )
        loader.add_option(
            "llm_redaction_patterns",
            str,
            "",
            "Secret shapes to add or turn off: a mapping in mitm.conf "
            '({"add": {name: regex}, "disable": [name]}), or the same as JSON/YAML text.',
        )

    def configure(self, updated: set[str]) -> None:
        if updated & {"llm_env_file", "llm_redaction_patterns"}:
            try:
                patterns = pattern_settings(ctx.options.llm_redaction_patterns)
            except ValueError as e:
                raise exceptions.OptionsError(f"llm_redaction_patterns: {e}") from None
            self.redactor = Redactor(self._keys(), patterns)
        if updated & {"llm_env_file", "redact_api_keys_in_prompts"}:
            enabled = ctx.options.redact_api_keys_in_prompts
            if not ctx.options.has_changed("redact_api_keys_in_prompts"):
                try:
                    enabled = env_bool(self.config.env, "REDACT_API_KEYS_IN_PROMPTS", enabled)
                except ValueError as e:
                    raise exceptions.OptionsError(str(e)) from None
            self.enabled = enabled

    def _keys(self) -> list[str]:
        keys = [k.value for b in self.config.backends.values() for k in b.keys]
        if self.config.proxy_key:
            keys.append(self.config.proxy_key)
        return keys

    def request(self, flow: http.HTTPFlow) -> None:
        ex = exchange_of(flow.metadata)
        if ex is None or flow.response is not None:
            return
        redactor = self.redactor
        if not redactor.active:
            return
        if redactor.key_count:
            ex.answer_scrubber = redactor.keys_only()
        enabled = self.enabled
        if ex.session is not None and ex.session.redact_api_keys is not None:
            enabled = ex.session.redact_api_keys
        if not enabled:
            return
        ex.redactor = redactor
        count = redactor.redact_request(ex.request)
        if count:
            ex.request_edited = True
            ex.redactions += count
            logger.info(
                "%s: %d secret%s redacted from the prompt",
                ex.front.session_id or flow.request.path,
                count,
                "" if count == 1 else "s",
            )

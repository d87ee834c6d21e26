"""Yes/no switches read from the environment: one reading everywhere, a typo is an error."""

from __future__ import annotations

import pytest
from mitmproxy import exceptions
from mitmproxy.test import taddons

from addons.commands import Commands
from addons.config import Config
from addons.redaction import Redaction


@pytest.mark.parametrize(("value", "enabled"), [("no", False), ("off", False), ("1", True)])
def test_redaction_follows_the_environment(value: str, enabled: bool) -> None:
    config = Config()
    config.apply({"REDACT_API_KEYS_IN_PROMPTS": value})
    redaction = Redaction(config)
    with taddons.context(config, redaction):
        redaction.configure({"llm_env_file"})  # the environment was (re)read
        assert redaction.enabled is enabled


@pytest.mark.parametrize(
    ("addon", "variable"),
    [(Redaction, "REDACT_API_KEYS_IN_PROMPTS"), (Commands, "DISABLE_INTERACTIVE_COMMANDS")],
)
def test_a_misspelt_switch_is_refused_not_read_as_yes(addon: type, variable: str) -> None:
    config = Config()
    config.apply({variable: "flase"})
    part = addon(config)
    with taddons.context(config, part), pytest.raises(exceptions.OptionsError, match=variable):
        part.configure({"llm_env_file"})

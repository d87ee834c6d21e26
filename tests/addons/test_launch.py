"""The `llm-proxy` launcher: the lean master under `python -O` unless the checks are wanted."""

from __future__ import annotations

import sys

import pytest

import addons.serve
from addons import launch


def test_it_becomes_python_dash_o_with_the_same_arguments(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[list[str]] = []

    def execv(path: str, argv: list[str]) -> None:
        calls.append([path, *argv])

    monkeypatch.delenv(launch.DEBUG_CHECKS, raising=False)
    monkeypatch.setattr(launch.os, "execv", execv)
    monkeypatch.setattr(sys, "argv", ["llm-proxy", "--set", "usage_db="])
    launch.main()
    assert calls == [
        [sys.executable, sys.executable, "-O", "-m", "addons.serve", "--set", "usage_db="]
    ]


@pytest.mark.parametrize("value", ["1", "yes", "true"])
def test_the_debug_checks_switch_serves_in_this_process(
    monkeypatch: pytest.MonkeyPatch, value: str
) -> None:
    served: list[bool] = []
    monkeypatch.setenv(launch.DEBUG_CHECKS, value)
    monkeypatch.setattr(launch.os, "execv", lambda *a: pytest.fail("re-executed"))
    monkeypatch.setattr(addons.serve, "main", lambda: served.append(True))
    launch.main()
    assert served == [True]


def test_a_misspelt_switch_is_an_error_not_a_guess(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv(launch.DEBUG_CHECKS, "maybe")
    monkeypatch.setattr(launch.os, "execv", lambda *a: pytest.fail("re-executed"))
    with pytest.raises(SystemExit) as exit_info:
        launch.main()
    assert exit_info.value.code == 2
    assert "LLM_PROXY_DEBUG_CHECKS must be" in capsys.readouterr().err

"""Cached hook dispatch: every addon still gets every event it implements, in chain order, while
the chain changes under it (addons added, removed, registered, scripts reloaded), and the host is
left as it was when the chain goes or is told to."""

from __future__ import annotations

import asyncio
import logging
import textwrap
from pathlib import Path
from typing import Any

import pytest
from mitmproxy import addonmanager, exceptions, hooks, http
from mitmproxy.addons import script
from mitmproxy.proxy.layers.http import HttpRequestHook, HttpResponseHook
from mitmproxy.test import taddons, tflow

from addons.dispatch import FastDispatch, HookCachingAddonManager


class Recorder:
    def __init__(self, name: str, seen: list[str]) -> None:
        self.name = name
        self.seen = seen

    def request(self, flow: http.HTTPFlow) -> None:
        self.seen.append(f"{self.name}:request")


class AsyncRecorder(Recorder):
    async def response(self, flow: http.HTTPFlow) -> None:
        self.seen.append(f"{self.name}:response")


class Parent:
    """An addon with nested addons, as mitmproxy's script loader is."""

    def __init__(self, *children: object) -> None:
        self.name = "parent"
        self.addons = list(children)


async def request(tctx: taddons.context) -> None:
    await tctx.master.addons.handle_lifecycle(HttpRequestHook(tflow.tflow()))


def run(tctx: taddons.context) -> None:
    tctx.master.addons.trigger(hooks.RunningHook())


async def test_once_running_the_host_dispatches_from_the_cache_and_sees_every_change() -> None:
    seen: list[str] = []
    first = Recorder("first", seen)
    with taddons.context(FastDispatch(), first) as tctx:
        manager = tctx.master.addons
        assert type(manager) is addonmanager.AddonManager
        run(tctx)
        assert type(manager) is HookCachingAddonManager
        await request(tctx)
        assert seen == ["first:request"]

        second = AsyncRecorder("second", seen)
        manager.add(second)
        seen.clear()
        await request(tctx)
        flow = tflow.tflow(resp=True)
        await manager.handle_lifecycle(HttpResponseHook(flow))
        assert seen == ["first:request", "second:request", "second:response"]

        manager.remove(first)
        seen.clear()
        await request(tctx)
        assert seen == ["second:request"]

        # an addon that manages nested addons registers them itself
        parent = Parent()
        manager.add(parent)
        await request(tctx)  # the cache now holds the parent without children
        child = Recorder("child", seen)
        parent.addons.append(child)
        manager.register(child)
        seen.clear()
        await request(tctx)
        assert seen == ["second:request", "child:request"]


async def test_a_reloaded_script_is_called_and_its_old_module_is_not(tmp_path: Path) -> None:
    """mitmproxy's own script loading (what `mitmdump -s` and a file watcher's reload do)."""
    path = tmp_path / "user_script.py"
    code = """
        SEEN = []
        class Tag:
            def request(self, flow):
                flow.request.headers["x-version"] = "{version}"
        addons = [Tag()]
    """
    path.write_text(textwrap.dedent(code.format(version="1")))
    with taddons.context(FastDispatch()) as tctx:
        loaded = script.Script(str(path), True)  # loads once the event loop runs, as mitmdump does
        tctx.master.addons.add(loaded)
        run(tctx)
        await asyncio.sleep(0.05)
        assert loaded.reloadtask is not None
        loaded.reloadtask.cancel()  # this test reloads the script itself
        flow = tflow.tflow()
        await tctx.master.addons.handle_lifecycle(HttpRequestHook(flow))
        assert flow.request.headers["x-version"] == "1"

        path.write_text(textwrap.dedent(code.format(version="2")))
        loaded.loadscript()
        flow = tflow.tflow()
        await tctx.master.addons.handle_lifecycle(HttpRequestHook(flow))
        assert flow.request.headers.get_all("x-version") == ["2"]

        path.write_text("this is not python")  # a failed reload: no script, no old hooks
        loaded.loadscript()
        flow = tflow.tflow()
        await tctx.master.addons.handle_lifecycle(HttpRequestHook(flow))
        assert "x-version" not in flow.request.headers


async def test_a_failing_hook_is_logged_and_the_next_addon_still_runs(
    caplog: pytest.LogCaptureFixture,
) -> None:
    seen: list[str] = []

    class Broken:
        def request(self, flow: http.HTTPFlow) -> None:
            raise RuntimeError("boom")

    class Halting:
        def request(self, flow: http.HTTPFlow) -> None:
            seen.append("halting:request")
            raise exceptions.AddonHalt

    with taddons.context(FastDispatch(), Broken(), Recorder("after", seen)) as tctx:
        run(tctx)
        with caplog.at_level(logging.ERROR):
            await request(tctx)
        assert seen == ["after:request"]
        assert "boom" in caplog.text

        tctx.master.addons.remove(tctx.master.addons.get("after"))
        tctx.master.addons.add(Halting(), Recorder("never", seen))
        seen.clear()
        await request(tctx)
        assert seen == ["halting:request"]


async def test_the_option_and_the_chains_end_give_the_host_its_own_dispatch_back() -> None:
    seen: list[str] = []
    dispatch = FastDispatch()
    with taddons.context(dispatch, Recorder("one", seen)) as tctx:
        manager = tctx.master.addons
        tctx.options.update(llm_fast_dispatch=False)
        run(tctx)
        assert type(manager) is addonmanager.AddonManager

        tctx.options.update(llm_fast_dispatch=True)
        assert type(manager) is HookCachingAddonManager
        tctx.options.update(llm_fast_dispatch=False)
        assert type(manager) is addonmanager.AddonManager
        assert not hasattr(manager, "_handlers")
        await request(tctx)
        assert seen == ["one:request"]

        tctx.options.update(llm_fast_dispatch=True)
        manager.remove(dispatch)  # the chain unloaded: its `done`
        assert type(manager) is addonmanager.AddonManager
        seen.clear()
        await request(tctx)
        assert seen == ["one:request"]


def test_a_manager_that_is_not_mitmproxys_own_is_left_alone() -> None:
    class Custom(addonmanager.AddonManager):
        pass

    with taddons.context(FastDispatch()) as tctx:
        custom: Any = tctx.master.addons
        custom.__class__ = Custom
        run(tctx)
        assert type(tctx.master.addons) is Custom

"""mitmweb with the chain: each LLM flow reads as a conversation with its route and usage."""

from __future__ import annotations

import shutil
from collections.abc import Iterator

import httpx
import pytest

from tests.e2e import clients
from tests.e2e.conftest import PROXY_KEY, running_proxy
from tests.e2e.proxy import ProxyProcess, free_port
from tests.upstream.script import Reply, Upstream

WEB_PASSWORD = "web-test-password"


@pytest.fixture(scope="module")
def mitmweb(upstream: Upstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ProxyProcess, str]]:
    web_port = free_port()
    with running_proxy(
        upstream,
        tmp_path_factory.mktemp("conf-web"),
        launcher="mitmweb",
        extra=[f"web_port={web_port}", f"web_password={WEB_PASSWORD}", "web_open_browser=false"],
    ) as process:
        yield process, f"http://127.0.0.1:{web_port}"


def test_a_converted_stream_reads_as_a_conversation(
    mitmweb: tuple[ProxyProcess, str], upstream: Upstream
) -> None:
    proxy, web = mitmweb
    upstream.enqueue(Reply(text="It is sunny.", thinking="Check the sky.", usage=(12, 8, 0, 0)))
    got = clients.openai_call(
        clients.openai_client(proxy.url, PROXY_KEY), "anthropic:claude-x", stream=True, tools=False
    )
    assert got.text == "It is sunny."
    auth = {"Authorization": f"Bearer {WEB_PASSWORD}"}
    flows = httpx.get(f"{web}/flows", headers=auth, timeout=10).json()
    (flow,) = [f for f in flows if f["request"]["path"].endswith("/messages")]
    base = f"{web}/flows/{flow['id']}"
    request = httpx.get(f"{base}/request/content/auto.json", headers=auth, timeout=10).json()
    assert request["view_name"] == "LLM"
    assert "attempt 1: anthropic:claude-x key ANTHROPIC_API_KEY" in request["text"]
    assert "USER:\n    What is the weather in Paris?" in request["text"]
    response = httpx.get(f"{base}/response/content/auto.json", headers=auth, timeout=10).json()
    assert response["view_name"] == "LLM"
    assert "It is sunny." in response["text"] and "[thinking]" in response["text"]
    assert "tokens: in 12, out 8" in response["text"]
    # the streamed answer is kept whole, in the client's protocol, for reading
    raw = httpx.get(f"{base}/response/content.data", headers=auth, timeout=10)
    assert b"data: [DONE]" in raw.content and b"It is sunny." in raw.content
    # and the backend key is only named, never shown
    assert flow["request"]["headers"] and "upstream-anthropic-key" not in str(flow)


CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="no chromium/chromedriver on PATH (Debian packages chromium and chromium-driver; "
    ".ci/run installs them)",
)
def test_the_conversation_shows_in_a_real_browser(
    mitmweb: tuple[ProxyProcess, str], upstream: Upstream
) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    proxy, web = mitmweb
    upstream.enqueue(Reply(text="Sunny, seen in the browser.", usage=(12, 8, 0, 0)))
    clients.openai_call(
        clients.openai_client(proxy.url, PROXY_KEY), "anthropic:claude-x", stream=True, tools=False
    )
    auth = {"Authorization": f"Bearer {WEB_PASSWORD}"}
    flows = httpx.get(f"{web}/flows", headers=auth, timeout=10).json()
    flow_id = flows[-1]["id"]
    options = Options()
    for argument in ("--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                     "--disable-background-networking"):
        options.add_argument(argument)
    options.binary_location = str(CHROMIUM)
    browser = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    try:
        def page_text() -> str:
            return str(browser.find_element(By.TAG_NAME, "body").text)

        browser.get(f"{web}/?token={WEB_PASSWORD}#/flows/{flow_id}/request")
        WebDriverWait(browser, 15).until(lambda _: "== conversation ==" in page_text())
        request_side = page_text()
        assert "USER:" in request_side and "What is the weather in Paris?" in request_side
        assert "attempt 1: anthropic:claude-x key ANTHROPIC_API_KEY" in request_side
        assert "upstream-anthropic-key" not in request_side
        browser.get(f"{web}/?token={WEB_PASSWORD}#/flows/{flow_id}/response")
        WebDriverWait(browser, 15).until(lambda _: "== answer ==" in page_text())
        response_side = page_text()
        assert "Sunny, seen in the browser." in response_side
        assert "tokens: in 12, out 8" in response_side
    finally:
        browser.quit()

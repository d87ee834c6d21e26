"""Intercept addon: what the intercepting listener (HTTPS_PROXY) does at the TLS level.

- Only the LLM API hosts (`llm_intercept_hosts`) are decrypted; a TLS connection to any other
  host is passed through as it is (`llm_passthrough_other_hosts`, on by default): mitmproxy
  never shows it a certificate of its own, so certificate-pinned clients and non-HTTP protocols
  keep working, and nothing of it is parsed or recorded. mitmproxy's own `ignore_hosts` and
  `allow_hosts` still apply on top.
- A client that rejects the proxy's certificate for an API host gets mitmproxy's usual TLS
  failure, and the log says once, plainly, how to make clients trust the proxy's CA.
"""

from __future__ import annotations

import logging

from mitmproxy import ctx, tls
from mitmproxy.addonmanager import Loader
from mitmproxy.proxy.mode_specs import ReverseMode

logger = logging.getLogger(__name__)


class InterceptTls:
    def __init__(self) -> None:
        self._told_about_ca = False

    def load(self, loader: Loader) -> None:
        loader.add_option(
            "llm_passthrough_other_hosts",
            bool,
            True,
            "On the intercepting listener, pass TLS to hosts other than llm_intercept_hosts "
            "through untouched (not decrypted).",
        )

    def tls_clienthello(self, data: tls.ClientHelloData) -> None:
        if data.ignore_connection or not ctx.options.llm_passthrough_other_hosts:
            return
        client = data.context.client
        if isinstance(client.proxy_mode, ReverseMode):
            return  # the gateway listener: its own TLS, if any, is the gateway's
        host = data.client_hello.sni or (
            data.context.server.address[0] if data.context.server.address else ""
        )
        if host not in ctx.options.llm_intercept_hosts:
            data.ignore_connection = True

    def tls_failed_client(self, data: tls.TlsData) -> None:
        if self._told_about_ca:
            return
        self._told_about_ca = True
        logger.warning(
            "a client (%s) refused the proxy's certificate for %s: make it trust the proxy's CA "
            "(`llm-proxy ca` prints the file; SSL_CERT_FILE=<file> for Python, "
            "NODE_EXTRA_CA_CERTS=<file> for Node)",
            data.context.client.peername[0] if data.context.client.peername else "?",
            data.conn.sni or "an API host",
        )

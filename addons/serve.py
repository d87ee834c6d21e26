"""The lean launcher (`llm-proxy`): a mitmproxy Master with only what the proxy needs.

Instead of DumpMaster's ~35 default addons it holds Core, Proxyserver, NextLayer, TlsConfig,
DnsResolver, a terminal log and the error check, plus the chain: measured, that costs less than
half the CPU per request of stock mitmdump. Upstream connections are read in batches while they
flood, and what one event makes to send leaves in one write (`BatchingConnectionHandler`).
Options: `mitm.conf`, then `--set name=value` (which wins). Stock `mitmdump -s addons/chain.py`
runs the identical chain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from mitmproxy import certs, connection, exceptions, hooks, master, options
from mitmproxy.addons import (
    core,
    dns_resolver,
    errorcheck,
    next_layer,
    proxyserver,
    termlog,
    tlsconfig,
)
from mitmproxy.proxy import events, mode_servers, server_hooks

from addons.dispatch import HookCachingAddonManager
from protocol.read_batching import BatchingReader
from protocol.write_coalescing import CoalescingWriter


class BatchingConnectionHandler(mode_servers.ProxyConnectionHandler):
    """mitmproxy's connection handler, reading upstream (server) connections through
    `protocol.read_batching.BatchingReader`: an upstream that floods the proxy is read in a few
    large reads instead of hundreds of small ones, each of which costs mitmproxy's layers and
    the stream pipeline a fixed amount of work. Client connections are read as they are.

    Every TCP connection is written through `protocol.write_coalescing.CoalescingWriter`,
    flushed once each event is processed: a message's head and body, a stream's response head
    and first events, leave in one send each."""

    def __init__(self, *args: Any) -> None:
        self._unflushed: list[CoalescingWriter] = []  # writers holding bytes of this event
        super().__init__(*args)
        self._coalesce(self.client)

    def _coalesce(self, conn: connection.Connection) -> None:
        """Write `conn` through a `CoalescingWriter` (once, when its transport is known)."""
        io = self.transports.get(conn)
        if io is None or type(io.writer) is not asyncio.StreamWriter:
            return
        on_pending: Callable[[CoalescingWriter], None] = self._unflushed.append
        if isinstance(conn, connection.Server):
            on_pending = functools.partial(self._request_pending, io)
        io.writer = CoalescingWriter(io.writer, on_pending)  # type: ignore[assignment]

    def _request_pending(self, io: Any, writer: CoalescingWriter) -> None:
        """Bytes for an upstream: a request, whose answer is a new one for the reader."""
        self._unflushed.append(writer)
        if isinstance(io.reader, BatchingReader):
            io.reader.request_sent()

    def _flush(self) -> None:
        unflushed = self._unflushed
        for writer in unflushed:
            try:
                writer.flush()
            except Exception:  # as mitmproxy treats a failed write: logged, never raised
                self.log("could not send data", logging.ERROR, exc_info=True)
        unflushed.clear()

    async def handle_hook(self, hook: Any) -> None:
        # what the event made before this hook leaves now, not after the hook (with mitmproxy's
        # eager tasks a hook starts inside the event: a stream's last chunks would otherwise
        # wait for the `response` hook)
        self._flush()
        if isinstance(hook, server_hooks.ServerConnectedHook):
            # the connection's transport is in place; its first bytes go out after this hook
            self._coalesce(hook.data.server)
        await super().handle_hook(hook)

    async def server_event(self, event: events.Event) -> None:
        await super().server_event(event)
        self._flush()

    async def handle_connection(self, conn: connection.Connection) -> None:
        io = self.transports[conn]
        writer = io.writer
        if (
            isinstance(conn, connection.Server)
            and isinstance(io.reader, asyncio.StreamReader)
            and isinstance(writer, asyncio.StreamWriter | CoalescingWriter)
        ):
            transport = writer.transport
            assert isinstance(transport, asyncio.Transport)
            io.reader = BatchingReader(io.reader, transport)  # type: ignore[assignment]
        await super().handle_connection(conn)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="llm-proxy", description="LLM interactive proxy (lean mitmproxy master)"
    )
    parser.add_argument(
        "--set",
        dest="setoptions",
        action="append",
        default=[],
        metavar="option=value",
        help="set an option (as mitmdump's --set); wins over mitm.conf",
    )
    parser.add_argument(
        "command",
        nargs="?",
        choices=["ca"],
        help="ca: print the path of the CA certificate clients must trust (created if missing)",
    )
    parser.add_argument(
        "--bare",
        action="store_true",
        help="serve without the chain: a plain lean reverse proxy (for benchmarks)",
    )
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> None:
    from addons.chain import LLMProxy

    logging.getLogger().setLevel(logging.DEBUG)  # as mitmdump does: termlog_verbosity filters
    # one line per client connection is noise for a gateway: keep warnings only
    logging.getLogger("mitmproxy.proxy.server").setLevel(logging.WARNING)
    opts = options.Options()
    # the proxy servers make a handler per client connection by this module-level name
    mode_servers.ProxyConnectionHandler = BatchingConnectionHandler  # type: ignore[misc]
    m = master.Master(opts, with_termlog=False)
    m.addons = HookCachingAddonManager(m)
    # no addon here uses the deprecated `add_log` hook: skip dispatching one per log line
    m._legacy_log_events.uninstall()
    m.addons.add(
        termlog.TermLog(),
        core.Core(),
        proxyserver.Proxyserver(),
        next_layer.NextLayer(),
        tlsconfig.TlsConfig(),
        dns_resolver.DnsResolver(),
        errorcheck.ErrorCheck(),
    )
    if not args.bare:
        m.addons.add(LLMProxy())
    try:
        opts.set(*args.setoptions)
        # as mitmdump's script loader does: every addon sees every option once at start, also
        # the ones nobody changed (the environment is read, the usage file opened, ...)
        m.addons.trigger(hooks.ConfigureHook(set(opts.keys())))
    except exceptions.OptionsError as e:
        print(f"llm-proxy: {e}", file=sys.stderr)
        sys.exit(2)
    await m.run()


def print_ca(setoptions: list[str]) -> None:
    """The CA file HTTPS_PROXY clients trust (`SSL_CERT_FILE`, `NODE_EXTRA_CA_CERTS`)."""
    opts = options.Options()
    opts.set(*[o for o in setoptions if o.startswith("confdir=")])
    confdir = Path(os.path.expanduser(opts.confdir))
    certs.CertStore.from_store(confdir, "mitmproxy", 2048)  # creates the CA on first use
    print(confdir / "mitmproxy-ca-cert.pem")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.command == "ca":
        print_ca(args.setoptions)
        return
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(args))


if __name__ == "__main__":
    main()

"""The lean launcher (`llm-proxy`): a mitmproxy Master with only what the proxy needs.

Instead of DumpMaster's ~35 default addons it holds Core, Proxyserver, NextLayer, TlsConfig,
DnsResolver, a terminal log and the error check, plus the chain: measured, that costs less than
half the CPU per request of stock mitmdump. Options: `mitm.conf`, then `--set name=value`
(which wins). Stock `mitmdump -s addons/chain.py` runs the identical chain.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import sys

from mitmproxy import exceptions, master, options
from mitmproxy.addons import (
    core,
    dns_resolver,
    errorcheck,
    next_layer,
    proxyserver,
    termlog,
    tlsconfig,
)


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
        "--bare",
        action="store_true",
        help="serve without the chain: a plain lean reverse proxy (for benchmarks)",
    )
    return parser.parse_args(argv)


async def run(argv: list[str] | None = None) -> None:
    from addons.chain import make_chain

    args = parse_args(argv)
    logging.getLogger().setLevel(logging.DEBUG)  # as mitmdump does: termlog_verbosity filters
    # one line per client connection is noise for a gateway: keep warnings only
    logging.getLogger("mitmproxy.proxy.server").setLevel(logging.WARNING)
    opts = options.Options()
    m = master.Master(opts, with_termlog=False)
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
        m.addons.add(*make_chain())
    try:
        opts.set(*args.setoptions)
    except exceptions.OptionsError as e:
        print(f"llm-proxy: {e}", file=sys.stderr)
        sys.exit(2)
    await m.run()


def main(argv: list[str] | None = None) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run(argv))


if __name__ == "__main__":
    main()

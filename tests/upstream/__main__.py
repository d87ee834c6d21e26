"""`python -m tests.upstream --port N`: the test upstream as a standalone server (benchmarks).

Serves the default reply on every backend (flags tune it: `--stream-chunks 2000` makes
streams of 2000 text deltas), keys as in `server.DEFAULT_KEYS` unless `--any-key`. Requests
are not kept (`--keep N` keeps the last N for nothing but memory checks); validation stays on
unless `--no-validate`. Prints one line, `listening on http://HOST:PORT`, once it accepts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import socket
import sys

from aiohttp import web

from tests.upstream.reply import DEFAULT_TEXT, Reply, Usage
from tests.upstream.server import API_ROOTS, BACKENDS, RequestLog, ServerState, build_app


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m tests.upstream", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765, help="0 picks a free port")
    parser.add_argument("--text", default=DEFAULT_TEXT, help="the answer text")
    parser.add_argument(
        "--stream-chunks",
        type=int,
        default=3,
        help="text deltas per streamed answer (the text is lengthened to have that many)",
    )
    parser.add_argument("--thinking", default=None, help="thinking text to send before the answer")
    parser.add_argument("--chunk-delay", type=float, default=0.0, help="seconds between events")
    parser.add_argument("--delay", type=float, default=0.0, help="seconds before the headers")
    parser.add_argument("--usage", type=int, nargs=4, metavar=("IN", "OUT", "REASONING", "CACHED"))
    parser.add_argument("--no-validate", action="store_true", help="skip request validation")
    parser.add_argument("--any-key", action="store_true", help="accept any non-empty API key")
    parser.add_argument("--keep", type=int, default=0, help="recorded requests to keep")
    return parser.parse_args(argv)


def default_reply(args: argparse.Namespace) -> Reply:
    text: str = args.text
    chunks = max(1, args.stream_chunks)
    if len(text) < chunks:
        text = " tok" * chunks  # one delta per " tok"
    usage = Usage(*args.usage) if args.usage else Usage()
    return Reply(
        text=text,
        thinking=args.thinking,
        usage=usage,
        text_chunks=chunks,
        chunk_delay=args.chunk_delay,
        delay_before_headers=args.delay,
    )


async def serve(args: argparse.Namespace) -> None:
    state = ServerState(validate=not args.no_validate, log=RequestLog(limit=args.keep))
    if args.any_key:
        for backend in BACKENDS:
            state.keys[backend] = None
    state.set_default(default_reply(args))
    runner = web.AppRunner(build_app(state), access_log=None, shutdown_timeout=0.5)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((args.host, args.port))
    sock.listen(1024)
    sock.setblocking(False)
    await web.SockSite(runner, sock, backlog=1024).start()
    host, port = sock.getsockname()[:2]
    print(f"listening on http://{host}:{port}", flush=True)
    for backend in BACKENDS:
        key = state.keys[backend] or "<any>"
        print(f"  {backend:<10} http://{host}:{port}{API_ROOTS[backend]}  key {key}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stop.set)
    try:
        await stop.wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args))
    return 0


if __name__ == "__main__":
    sys.exit(main())

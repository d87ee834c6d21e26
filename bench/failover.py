"""Failover benchmark: what a failed attempt costs on top of itself, and what a pool costs.

It starts the fast bench upstream (`bench/upstream.py`) and two proxies as the README's run
command starts them, on free 127.0.0.1 ports:
  pooled   OpenRouter with four keys; OpenAI with one key the upstream always answers 503
           (after `--fail-ms`); Anthropic with a good key; the route
           `bench-route = m: openai:gpt-4o, anthropic:claude-bench` (so every request on the
           route fails once on OpenAI and is answered by Anthropic, another backend and
           protocol: the fallback's answer is converted back to the client's OpenAI protocol)
  single   the same with one OpenRouter key
and measures, in interleaved rounds (noise spreads over all figures):
  failed     the failing request sent straight to the upstream: the failed attempt's own time
  fallback   `anthropic:claude-bench` through the proxy: the fallback on its own
  route      `bench-route` through the proxy: failed attempt + failover + fallback
  -> added = route - fallback - failed; target: at most 5 ms (median)
  stream TTFB: the same three for a 200-chunk stream (time to the first text delta)
  -> added TTFB = route - fallback - failed; target: at most 10 ms (median)
  throughput: non-streamed requests at concurrency 32 that succeed on their first attempt,
  OpenRouter with four keys (pooled) vs one key (single); target: pooled >= 90% of single.

Run: `.venv/bin/python -m bench.failover [--quick]`. Results go to
`bench/results/failover-<time>.json`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

from bench.relay import REPO, Services, clean_env, free_port

VENV_BIN = REPO / ".venv" / "bin"
ROUTE = "bench-route"
BODY = {"messages": [{"role": "user", "content": "hi"}], "max_tokens": 16}


def proxy_env(up: int, openrouter_keys: int, fail: str) -> dict[str, str]:
    env = {
        "OPENAI_API_BASE_URL": f"http://127.0.0.1:{up}/openai/v1",
        "OPENAI_API_KEY": fail,
        "ANTHROPIC_API_BASE_URL": f"http://127.0.0.1:{up}/anthropic/v1",
        "ANTHROPIC_API_KEY": "good-anthropic",
        "OPENROUTER_API_BASE_URL": f"http://127.0.0.1:{up}/openrouter/api/v1",
        "LLM_BACKEND": "openrouter",
    }
    for i in range(1, openrouter_keys + 1):
        env[f"OPENROUTER_API_KEY_{i}"] = f"good-openrouter-{i}"
    return clean_env(env)


def proxy_cmd(port: int, confdir: Path) -> list[str]:
    return [
        str(VENV_BIN / "llm-proxy"),
        "--set",
        f"mode=reverse:http://127.0.0.1:9@127.0.0.1:{port}",
        "--set",
        f"usage_db={confdir}/usage.db",
        "--set",
        f"confdir={confdir}",
        "--set",
        "llm_env_file=",
        "--set",
        f"llm_routes={ROUTE}=m:openai:gpt-4o,anthropic:claude-bench",
        "--set",
        "termlog_verbosity=warn",
    ]


async def timed_post(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> tuple[float, int]:
    started = time.perf_counter()
    async with session.post(url, json=body, headers=headers) as resp:
        await resp.read()
        return time.perf_counter() - started, resp.status


async def timed_first_delta(
    session: aiohttp.ClientSession, url: str, body: dict[str, Any], headers: dict[str, str]
) -> float:
    started = time.perf_counter()
    first = None
    async with session.post(url, json=body, headers=headers) as resp:
        async for line in resp.content:
            if first is None and b"tok" in line:
                first = time.perf_counter() - started
        if first is None:
            raise RuntimeError(f"no text delta in the stream (status {resp.status})")
    return first


async def throughput(url: str, model: str, n: int, concurrency: int = 32) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = list(range(n))
        errors = 0

        async def worker() -> None:
            nonlocal errors
            while queue:
                queue.pop()
                _, status = await timed_post(session, url, {**BODY, "model": model}, {})
                errors += status != 200

        started = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    if errors:
        raise RuntimeError(f"{errors} of {n} requests failed at {url} ({model})")
    return n / elapsed


async def bench(args: argparse.Namespace, services: Services, tmp: Path) -> dict[str, Any]:
    up = free_port()
    logs = tmp / "logs"
    logs.mkdir()
    upstream = services.start(
        "upstream",
        [sys.executable, str(REPO / "bench" / "upstream.py"), "--port", str(up),
         "--stream-chunks", "200"],
        up, clean_env(), logs,
    )
    fail = f"fail-503-{args.fail_ms}"
    ports = {"pooled": free_port(), "single": free_port()}
    proxies = {}
    for name, keys in (("pooled", 4), ("single", 1)):
        confdir = tmp / name
        confdir.mkdir()
        proxies[name] = services.start(
            name, proxy_cmd(ports[name], confdir), ports[name], proxy_env(up, keys, fail), logs
        )
    await upstream.wait_ready()
    for proxy in proxies.values():
        await proxy.wait_ready()

    proxy_url = f"http://127.0.0.1:{ports['pooled']}/v1/chat/completions"
    failing_url = f"http://127.0.0.1:{up}/openai/v1/chat/completions"
    fail_headers = {"authorization": f"Bearer {fail}"}
    figures: dict[str, list[float]] = {k: [] for k in (
        "failed", "fallback", "route", "failed_ttfb", "fallback_ttfb", "route_ttfb",
        "rps_pooled", "rps_single",
    )}
    async with aiohttp.ClientSession() as session:
        for _ in range(5):  # warm up both paths
            await timed_post(session, proxy_url, {**BODY, "model": ROUTE}, {})
            await timed_post(session, proxy_url, {**BODY, "model": "anthropic:claude-bench"}, {})
        for _ in range(args.rounds):
            for _ in range(args.n):
                t, status = await timed_post(
                    session, failing_url, {**BODY, "model": "gpt-4o"}, fail_headers
                )
                assert status == 503, status
                figures["failed"].append(t)
                t, status = await timed_post(
                    session, proxy_url, {**BODY, "model": "anthropic:claude-bench"}, {}
                )
                assert status == 200, status
                figures["fallback"].append(t)
                t, status = await timed_post(session, proxy_url, {**BODY, "model": ROUTE}, {})
                assert status == 200, status
                figures["route"].append(t)
                stream = {**BODY, "stream": True}
                started = time.perf_counter()
                async with session.post(
                    failing_url, json={**stream, "model": "gpt-4o"}, headers=fail_headers
                ) as resp:
                    await resp.read()
                figures["failed_ttfb"].append(time.perf_counter() - started)
                figures["fallback_ttfb"].append(await timed_first_delta(
                    session, proxy_url, {**stream, "model": "anthropic:claude-bench"}, {}
                ))
                figures["route_ttfb"].append(await timed_first_delta(
                    session, proxy_url, {**stream, "model": ROUTE}, {}
                ))
            for name in ("pooled", "single"):
                url = f"http://127.0.0.1:{ports[name]}/v1/chat/completions"
                figures[f"rps_{name}"].append(
                    await throughput(url, "openrouter:bench-model", args.throughput_n)
                )

    def med_ms(key: str) -> float:
        return statistics.median(figures[key]) * 1000

    added = med_ms("route") - med_ms("fallback") - med_ms("failed")
    added_ttfb = med_ms("route_ttfb") - med_ms("fallback_ttfb") - med_ms("failed_ttfb")
    rps_pooled = statistics.median(figures["rps_pooled"])
    rps_single = statistics.median(figures["rps_single"])
    summary = {
        "failed_ms": round(med_ms("failed"), 2),
        "fallback_ms": round(med_ms("fallback"), 2),
        "route_ms": round(med_ms("route"), 2),
        "added_ms": round(added, 2),
        "failed_ttfb_ms": round(med_ms("failed_ttfb"), 2),
        "fallback_ttfb_ms": round(med_ms("fallback_ttfb"), 2),
        "route_ttfb_ms": round(med_ms("route_ttfb"), 2),
        "added_ttfb_ms": round(added_ttfb, 2),
        "rps_pooled": round(rps_pooled, 1),
        "rps_single": round(rps_single, 1),
        "pool_ratio": round(rps_pooled / rps_single, 3),
    }
    checks = {
        "failover adds <= 5 ms beyond the failed attempt": added <= 5,
        "failed-over stream TTFB within 10 ms": added_ttfb <= 10,
        "multi-key throughput >= 90% of single-key": rps_pooled >= 0.9 * rps_single,
    }
    return {"summary": summary, "checks": checks, "raw_ms": {
        k: [round(v * 1000, 3) for v in vals] for k, vals in figures.items() if "rps" not in k
    }, "rps": {k: v for k, v in figures.items() if "rps" in k}}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="a smoke run of a few seconds")
    parser.add_argument("--fail-ms", type=int, default=20, help="the failed attempt's own time")
    args = parser.parse_args(argv)
    args.rounds, args.n, args.throughput_n = (2, 10, 300) if args.quick else (5, 40, 3000)
    services = Services()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-failover-") as tmp:
            results = asyncio.run(bench(args, services, Path(tmp)))
    finally:
        services.stop_all()
    results["meta"] = {"time": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                       "quick": args.quick, "fail_ms": args.fail_ms}
    print(json.dumps(results["summary"], indent=1))
    for name, ok in results["checks"].items():
        print(f"{'PASS' if ok else 'FAIL'}  {name}")
    out = REPO / "bench" / "results" / f"failover-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(results, indent=1))
    print(f"results: {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

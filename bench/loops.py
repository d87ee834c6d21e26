"""Loop detector benchmark: throughput of `LoopDetector` alone, in MB/s.

It owns one measurement: the no-loop corpus (tests/data/loops/no_loop/*.txt) concatenated, in a
seeded random order, until it reaches ~5 MB, fed to one detector in 20-character chunks (as a
model streams), then in 1-character and 400-character chunks for comparison. A loop found on
this corpus would be a false positive: it is counted (`matches`, expected 0) and the detector
goes on. Prints one JSON line of results.

With `--relay` it also measures what detection costs the proxy: two proxies as the README's
run command starts them (detection on, the default; and `loop_detection_enabled=false`) relay
the same 2,000-chunk stream from the bench upstream, same protocol (OpenAI to OpenAI, relayed
byte for byte) and converted (OpenAI client, Anthropic backend), in interleaved rounds; it
reports the median stream time and the proxy's CPU per stream, on vs off (target: detection
adds under 10%).

Run: `.venv/bin/python -m bench.loops [--mb 5] [--chunk 20] [--runs 3] [--relay]`
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.loops import LoopDetector, LoopSettings  # noqa: E402

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "data" / "loops" / "no_loop"
logger = logging.getLogger("bench.loops")


def corpus_text(target_bytes: int, seed: int = 11) -> str:
    """The no-loop files, shuffled and joined with blank lines, repeated up to the target size."""
    files = [p.read_text(encoding="utf-8") for p in sorted(CORPUS.glob("*.txt"))]
    if not files:
        raise SystemExit(f"no corpus files under {CORPUS}")
    rng = random.Random(seed)
    parts: list[str] = []
    size = 0
    while size < target_bytes:
        rng.shuffle(files)
        for text in files:
            parts.append(text)
            parts.append("\n\n")
            size += len(text.encode("utf-8")) + 2
    return "".join(parts)


def run(text: str, chunk: int, settings: LoopSettings) -> tuple[float, int]:
    """Seconds to feed `text` in `chunk`-character pieces, and how many loops were reported."""
    pieces = [text[i : i + chunk] for i in range(0, len(text), chunk)]
    detector = LoopDetector(settings)
    feed = detector.feed
    matches = 0
    start = time.perf_counter()
    for piece in pieces:
        if feed(piece) is not None:
            matches += 1
    return time.perf_counter() - start, matches


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=5.0, help="corpus size in MB")
    parser.add_argument("--chunk", type=int, default=20, help="characters per fed chunk")
    parser.add_argument("--runs", type=int, default=3, help="runs per chunk size (best kept)")
    parser.add_argument("--relay", action="store_true", help="also the proxy relay, on vs off")
    parser.add_argument("--streams", type=int, default=40, help="relay: streams per case")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    settings = LoopSettings()
    text = corpus_text(int(args.mb * 1_000_000))
    mb = len(text.encode("utf-8")) / 1_000_000
    results: dict[str, object] = {
        "bench": "loops",
        "python": platform.python_version(),
        "corpus_mb": round(mb, 3),
        "corpus_chars": len(text),
        "settings": {
            "min_pattern_length": settings.min_pattern_length,
            "max_pattern_length": settings.max_pattern_length,
            "min_repetitions": settings.min_repetitions,
            "buffer_size": settings.buffer_size,
        },
    }
    matches_total = 0
    for chunk in dict.fromkeys([args.chunk, 1, 400]):
        best = float("inf")
        for _ in range(max(1, args.runs)):
            seconds, matches = run(text, chunk, settings)
            best = min(best, seconds)
            matches_total += matches
        key = "mb_per_s" if chunk == args.chunk else f"mb_per_s_chunk_{chunk}"
        results[key] = round(mb / best, 2)
        if chunk == args.chunk:
            results["chunk_chars"] = chunk
            results["seconds"] = round(best, 3)
    results["matches"] = matches_total
    if matches_total:
        logger.warning("the detector reported %d loop(s) on the no-loop corpus", matches_total)
    if args.relay:
        results["relay"] = relay_cost(args.streams)
    print(json.dumps(results))
    return 0


def relay_cost(streams: int) -> dict[str, object]:
    """Stream relay time and proxy CPU with loop detection on vs off (see the docstring)."""
    import asyncio
    import statistics
    import tempfile

    import aiohttp

    from bench.relay import BIN, Services, clean_env, cpu_seconds, free_port

    async def one(session: aiohttp.ClientSession, url: str, model: str) -> float:
        started = time.perf_counter()
        body = {"model": model, "stream": True, "messages": [{"role": "user", "content": "go"}]}
        async with session.post(url, json=body) as resp:
            async for _ in resp.content.iter_any():
                pass
        return time.perf_counter() - started

    async def measure(tmp: Path, services: Services) -> dict[str, object]:
        up = free_port()
        logs = tmp / "logs"
        logs.mkdir()
        upstream = services.start(
            "upstream",
            [sys.executable, str(Path(__file__).parent / "upstream.py"), "--port", str(up)],
            up, clean_env(), logs,
        )
        env = clean_env({
            "OPENAI_API_KEY": "k", "OPENAI_API_BASE_URL": f"http://127.0.0.1:{up}/openai/v1",
            "ANTHROPIC_API_KEY": "k",
            "ANTHROPIC_API_BASE_URL": f"http://127.0.0.1:{up}/anthropic/v1",
        })
        ports = {}
        procs = {}
        for name, on in (("on", "true"), ("off", "false")):
            ports[name] = free_port()
            conf = tmp / name
            conf.mkdir()
            procs[name] = services.start(name, [
                str(BIN / "llm-proxy"),
                "--set", f"mode=reverse:http://127.0.0.1:9@127.0.0.1:{ports[name]}",
                "--set", f"confdir={conf}", "--set", "llm_env_file=", "--set", "usage_db=",
                "--set", f"loop_detection_enabled={on}", "--set", "termlog_verbosity=warn",
            ], ports[name], env, logs)
        await upstream.wait_ready()
        for proc in procs.values():
            await proc.wait_ready()
        times: dict[str, list[float]] = {}
        cpu: dict[str, float] = {}
        async with aiohttp.ClientSession() as session:
            for case, model in (("same", "openai:gpt-4o"), ("converted", "anthropic:claude-x")):
                for name in procs:
                    url = f"http://127.0.0.1:{ports[name]}/v1/chat/completions"
                    await one(session, url, model)  # warm up
                for _ in range(5):
                    for name, proc in procs.items():
                        url = f"http://127.0.0.1:{ports[name]}/v1/chat/completions"
                        before = cpu_seconds(proc.pid)
                        for _ in range(max(1, streams // 5)):
                            times.setdefault(f"{case}_{name}", []).append(
                                await one(session, url, model)
                            )
                        key = f"{case}_{name}"
                        cpu[key] = cpu.get(key, 0.0) + cpu_seconds(proc.pid) - before
        out: dict[str, object] = {"streams_per_case": 5 * max(1, streams // 5), "chunks": 2000}
        for case in ("same", "converted"):
            n = len(times[f"{case}_on"])
            on_ms = statistics.median(times[f"{case}_on"]) * 1000
            off_ms = statistics.median(times[f"{case}_off"]) * 1000
            cpu_on = cpu[f"{case}_on"] / n * 1000
            cpu_off = cpu[f"{case}_off"] / n * 1000
            out[case] = {
                "stream_ms_on": round(on_ms, 2), "stream_ms_off": round(off_ms, 2),
                "time_added_pct": round((on_ms / off_ms - 1) * 100, 1),
                "cpu_ms_on": round(cpu_on, 2), "cpu_ms_off": round(cpu_off, 2),
                "cpu_added_pct": round((cpu_on / cpu_off - 1) * 100, 1),
            }
        return out

    services = Services()
    try:
        with tempfile.TemporaryDirectory(prefix="bench-loops-") as tmp:
            return asyncio.run(measure(Path(tmp), services))
    finally:
        services.stop_all()


if __name__ == "__main__":
    sys.exit(main())

"""Loop detector benchmark: throughput of `LoopDetector` alone, in MB/s.

It owns one measurement: the no-loop corpus (tests/data/loops/no_loop/*.txt) concatenated, in a
seeded random order, until it reaches ~5 MB, fed to one detector in 20-character chunks (as a
model streams), then in 1-character and 400-character chunks for comparison. A loop found on
this corpus would be a false positive: it is counted (`matches`, expected 0) and the detector
goes on. Prints one JSON line of results.

Run: `.venv/bin/python -m bench.loops [--mb 5] [--chunk 20] [--runs 3]`
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
    print(json.dumps(results))
    return 0


if __name__ == "__main__":
    sys.exit(main())

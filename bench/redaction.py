"""Redaction benchmark: MB/s of `Redactor.redact` and of `StreamScrubber` on a 1 MB prompt.

The prompt is realistic agent traffic, made from a fixed seed: prose paragraphs, Python and
TypeScript code, shell sessions and JSON, with a few secrets sprinkled in (configured keys and
pattern shapes: an AWS key id, a GitHub token, a PEM private key). The redactor holds 100
configured keys of the shapes providers issue (OpenAI, Anthropic, Google, OpenRouter, Groq,
xAI, Mistral...) and every built-in pattern.

Measured (best of `--runs`, after one warm-up):
  redact_mb_s        one `redact()` over the whole prompt
  stream_mb_s        `StreamScrubber` (keys only, as for answers) over it in 20-char pieces
  bytes_stream_mb_s  `BytesScrubber` over its UTF-8 bytes in 20-byte pieces
Prints one JSON line.

Run: `.venv/bin/python -m bench.redaction [--size BYTES] [--runs N]`.
"""

from __future__ import annotations

import argparse
import json
import random
import string
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from protocol.redaction import BytesScrubber, Redactor, StreamScrubber  # noqa: E402

ALNUM = string.ascii_letters + string.digits
TOKEN = ALNUM + "_-"

PROSE = [
    "The service reads its configuration once at start-up and keeps it in memory; a change to "
    "the file needs a restart, which the deployment script does for you.",
    "When the request times out we retry twice with a growing delay, then give up and return "
    "the last error to the caller, who decides whether to show it.",
    "I looked at the failing test again: the fixture creates the database before the schema "
    "migration runs, so the first query sees an empty table.",
    "Could you refactor the parser so that it streams the input instead of loading the whole "
    "document? Large exports are several hundred megabytes.",
    "Our API keys live in the environment, never in the repository; the CI job injects them as "
    "masked secrets and rotates them every ninety days.",
    "The task-runner spawns one worker per core, and each worker owns a queue; a skipped task "
    "is logged with its id and the reason it was skipped.",
    "Note that disk-backed caches survive restarts, while the in-process one does not, so the "
    "first request after a deploy is always slower.",
]

PYTHON = [
    "def load_config(path: Path) -> dict[str, Any]:\n"
    '    """Read the YAML file and merge the defaults."""\n'
    "    with path.open() as fh:\n"
    "        data = yaml.safe_load(fh) or {}\n"
    "    return {**DEFAULTS, **data}\n",
    "class RetryPolicy:\n"
    "    def __init__(self, attempts: int = 3, base_delay: float = 0.5) -> None:\n"
    "        self.attempts = attempts\n"
    "        self.base_delay = base_delay\n\n"
    "    def delays(self) -> Iterator[float]:\n"
    "        for n in range(self.attempts):\n"
    "            yield self.base_delay * 2**n\n",
    "async def fetch_all(client: httpx.AsyncClient, urls: list[str]) -> list[bytes]:\n"
    "    tasks = [client.get(u, timeout=30) for u in urls]\n"
    "    responses = await asyncio.gather(*tasks, return_exceptions=True)\n"
    "    return [r.content for r in responses if isinstance(r, httpx.Response)]\n",
    "OPENAI_API_KEY = os.environ['OPENAI_API_KEY']\n"
    "client = OpenAI(api_key=OPENAI_API_KEY, base_url='http://127.0.0.1:8000/v1')\n"
    "resp = client.chat.completions.create(model='gpt-4o', messages=messages)\n",
]

TYPESCRIPT = [
    "export async function handler(event: APIGatewayProxyEvent): Promise<Result> {\n"
    "  const body = JSON.parse(event.body ?? '{}');\n"
    "  const user = await db.users.findUnique({ where: { id: body.userId } });\n"
    "  if (!user) return { statusCode: 404, body: 'not found' };\n"
    "  return { statusCode: 200, body: JSON.stringify(user) };\n"
    "}\n",
    "const skLearnCompatibleEstimatorWrapper = new Wrapper({ maxIterations: 1000 });\n"
    "const AKIA_PREFIX_DOCUMENTATION = 'see the IAM guide';\n",
]

SHELL = [
    "$ git status\nOn branch main\nChanges not staged for commit:\n"
    "  modified:   src/server/routes.py\n  modified:   tests/test_routes.py\n",
    "$ pytest -q tests/unit\n........................................ [ 62%]\n"
    "........................                             [100%]\n64 passed in 3.21s\n",
    "$ docker compose ps\nNAME        IMAGE          STATUS\napi         api:latest     Up 2 hours\n",
]


def make_keys(rng: random.Random, count: int) -> list[str]:
    def rand(n: int, alphabet: str = ALNUM) -> str:
        return "".join(rng.choice(alphabet) for _ in range(n))

    makers: list[Callable[[], str]] = [
        lambda: "sk-proj-" + rand(156, TOKEN),
        lambda: "sk-ant-api03-" + rand(93, TOKEN) + "AA",
        lambda: "AIza" + rand(35, TOKEN),
        lambda: "sk-or-v1-" + rand(64, "0123456789abcdef"),
        lambda: "gsk_" + rand(52),
        lambda: "xai-" + rand(80),
        lambda: rand(32),  # Mistral-style: no prefix at all
        lambda: "sk-" + rand(32, "0123456789abcdef"),  # DeepSeek-style
        lambda: "csk-" + rand(48, "0123456789abcdefghijklmnopqrstuvwxyz"),
        lambda: "llmproxy-" + rand(40),  # the proxy's own key
    ]
    return [makers[i % len(makers)]() for i in range(count)]


def make_prompt(rng: random.Random, size: int, keys: list[str]) -> str:
    pem = (
        "-----BEGIN RSA PRIVATE KEY-----\n"
        + "\n".join("".join(rng.choice(ALNUM + "+/") for _ in range(64)) for _ in range(25))
        + "\n-----END RSA PRIVATE KEY-----\n"
    )
    secrets = [
        f"export OPENAI_API_KEY={keys[0]}\n",
        f"the Anthropic key {keys[1]} stopped working yesterday\n",
        f'{{"api_key": "{keys[2]}", "region": "eu"}}\n',
        "aws_access_key_id = AKIA"
        + "".join(rng.choice("ABCDEFGHIJKLMNOPQRSTUVWXYZ234567") for _ in range(16))
        + "\n",
        "GITHUB_TOKEN=ghp_" + "".join(rng.choice(ALNUM) for _ in range(36)) + "\n",
        pem,
    ]
    pools = [PROSE, PYTHON, TYPESCRIPT, SHELL]
    out: list[str] = []
    total = 0
    next_secret = size // (len(secrets) + 1)
    placed = 0
    while total < size:
        piece = rng.choice(rng.choice(pools)) + "\n"
        if total >= next_secret * (placed + 1) and placed < len(secrets):
            piece = secrets[placed] + piece
            placed += 1
        out.append(piece)
        total += len(piece)
    return "".join(out)[:size]


def best_of(runs: int, fn: Callable[[], object]) -> float:
    fn()  # warm-up
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()

    rng = random.Random(20240611)
    keys = make_keys(rng, 100)
    prompt = make_prompt(rng, args.size, keys)
    redactor = Redactor(keys)
    answers = redactor.keys_only()
    mb = len(prompt.encode()) / 1e6

    _, redactions = redactor.redact(prompt)
    seconds = best_of(args.runs, lambda: redactor.redact(prompt))

    chunks = [prompt[i : i + 20] for i in range(0, len(prompt), 20)]

    def stream() -> int:
        scrubber = StreamScrubber(answers)
        for chunk in chunks:
            scrubber.feed(chunk)
        scrubber.flush()
        return scrubber.count

    stream_count = stream()
    stream_seconds = best_of(args.runs, stream)

    raw = prompt.encode()
    byte_chunks = [raw[i : i + 20] for i in range(0, len(raw), 20)]

    def bytes_stream() -> None:
        scrubber = BytesScrubber(answers)
        for chunk in byte_chunks:
            scrubber.feed(chunk)
        scrubber.flush()

    bytes_seconds = best_of(args.runs, bytes_stream)

    print(
        json.dumps(
            {
                "bench": "redaction",
                "prompt_mb": round(mb, 3),
                "configured_keys": len(keys),
                "patterns": len(redactor.pattern_names),
                "redactions": redactions,
                "redact_mb_s": round(mb / seconds, 1),
                "stream_chunk_chars": 20,
                "stream_redactions": stream_count,
                "stream_mb_s": round(mb / stream_seconds, 1),
                "bytes_stream_mb_s": round(mb / bytes_seconds, 1),
                "python": sys.version.split()[0],
            }
        )
    )


if __name__ == "__main__":
    main()

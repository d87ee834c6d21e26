"""Relay benchmark: what each way of running the proxy adds to an LLM call, in one run.

It owns the whole measurement: it starts a fast fake upstream (`bench/upstream.py`) and five
targets (plus four references) on free 127.0.0.1 ports, sends them the same load from one aiohttp
client (one session per target and concurrency, connector limit = concurrency), prints the
figures with their differences against direct and against stock mitmdump, checks the
performance targets (PASS/FAIL) and writes everything to `bench/results/relay-<time>.json`.
Everything it starts is stopped at the end, also on Ctrl-C or an error.

Targets:
  direct    the upstream itself
  mitmdump  stock `mitmdump` in reverse mode, no script
  lean      `llm-proxy --bare`: the lean master without the chain
  run       `llm-proxy` as the README's run command starts it (the chain)
  chain     stock `mitmdump -s addons/chain.py`
  mitmdump_stream  (reference) stock mitmdump with `stream_large_bodies=1`: the two relays
            above buffer whole responses; this one relays a stream chunk by chunk as the chain
            does, which gives the floor of mitmproxy's own per-chunk cost
  byte_relay  (reference) `bench/byte_relay.py`: a TCP relay that forwards bytes as it reads
            them (no HTTP, no flow): the least any Python proxy adds on this machine, in this run
  chain_own  (reference) `mitmdump -s addons/chain.py` with `llm_fast_dispatch=false`: the chain
            in a host whose hook dispatch it leaves as mitmproxy made it (`addons.dispatch`), so
            its CPU over stock mitmdump is what the chain's own hooks cost
  run_no_usage  (reference) the run command with `usage_db=` (no usage rows): what the usage
            file (a row per request, its rollups and histograms kept by triggers) costs
Cases: `same` is an OpenAI client calling an OpenAI backend; `conv` is an OpenAI client calling
an Anthropic backend through the chain (run, chain), and for the targets that cannot convert
(direct, mitmdump, lean) the upstream's own Anthropic endpoint: the baseline a conversion is
compared with.

Figures: latency of a small non-streamed request at concurrency 1 and 32 (added = target minus
direct), requests/s and the proxy process's CPU per request (utime+stime from /proc, process
and children) at concurrency 32, a 2,000-chunk stream's first byte and total time (median;
the upstream sends it as fast as it can) and the first byte of a 1-delta stream (no flood
behind it), and the proxy's RSS before and after at least 10,000 requests. After each
concurrency-32 batch every target is left alone for `SETTLE_S` before its CPU is read: what a
batch leaves behind (the usage writer commits its last rows up to a second later) counts as the
batch's CPU, and does not run under the streams measured next. Phases are
interleaved over the targets in rounds, so drift of a noisy machine spreads over all of them;
the CPU other processes used meanwhile is reported, as a measure of that noise.

Load generator, upstream and proxy share the machine's cores (2 on the reference box): the
latency and requests/s figures include that contention, the CPU per request figure does not
(it reads the proxy's PID only).

Run: `.venv/bin/python bench/relay.py [--quick]` (from anywhere; `make bench` does the same).
`--quick` shrinks every count for a smoke run under a minute.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import aiohttp

REPO = Path(__file__).resolve().parent.parent
BIN = Path(sys.executable).parent
RESULTS_DIR = REPO / "bench" / "results"
KEY = "k"
OPENAI_MODEL = "gpt-4o"
ANTHROPIC_MODEL = "claude-sonnet-4-5"
CLK_TCK = os.sysconf("SC_CLK_TCK")
KB_PER_MB = 1024
STREAM_CHUNKS = 2000
SHORT_CHUNKS = 1  # a stream with no flood behind its first byte: the proxy's own first-byte delay
SHORT_PER_LONG = 3  # short streams per long one
# seconds every target is left alone after a concurrency-32 batch, before its CPU is read: longer
# than the usage writer's longest wait under load (`UsageStore.BATCH_WAIT`) plus its commit
SETTLE_S = 1.2
CHUNKS_HEADER = "x-bench-stream-chunks"  # read by bench/upstream.py
DELTA = b"tok "
MESSAGES = [{"role": "user", "content": "Say hello."}]

# -- the performance targets the run checks ---------------------------------------------------
MAX_CPU_SAME_MS = 1.0
MAX_CPU_CONV_MS = 1.4
MIN_RPS = 1000.0
MAX_CHAIN_OVER_STOCK_MS = 0.3
MAX_STREAM_TOTAL_RATIO = 1.3
MAX_STREAM_TTFB_ADDED_MS = 1.5
MAX_RSS_GROWTH_MB = 50.0


@dataclass(frozen=True, slots=True)
class Counts:
    rounds: int  # the measured phases are repeated this many times, targets interleaved
    warmup: int  # requests per case before measuring (at concurrency 32)
    c1: int  # requests per case and round at concurrency 1
    c32: int  # requests per case and round at concurrency 32
    streams: int  # streams per case and round
    rss_requests: int  # at least this many requests between the two RSS readings


FULL = Counts(rounds=4, warmup=400, c1=300, c32=2000, streams=3, rss_requests=10_000)
QUICK = Counts(rounds=1, warmup=60, c1=100, c32=400, streams=2, rss_requests=1_000)


# -- processes --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def clean_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment without any backend key, base URL or proxy setting of the caller's."""

    def foreign(name: str) -> bool:
        return (
            "_API_KEY" in name
            or name.endswith("_API_BASE_URL")
            or name.startswith("LLM_")
            or name.lower().endswith("_proxy")
        )

    env = {k: v for k, v in os.environ.items() if not foreign(k)}
    env["NO_PROXY"] = "127.0.0.1,localhost"
    env.update(extra or {})
    return env


class Service:
    """A process started in its own session (so its whole group can be stopped)."""

    def __init__(self, name: str, cmd: list[str], port: int, env: dict[str, str], logs: Path):
        self.name = name
        self.cmd = cmd
        self.port = port
        self.log_path = logs / f"{name}.log"
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                cmd,
                cwd=REPO,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def pid(self) -> int:
        return self.proc.pid

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, timeout: float = 40.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection("127.0.0.1", self.port)
                writer.close()
                with contextlib.suppress(OSError):
                    await writer.wait_closed()
                return
            await asyncio.sleep(0.1)
        raise RuntimeError(f"{self.name} did not start listening:\n{self.log_tail()}")

    def stop(self) -> None:
        if self.proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)


class Services:
    """Everything the run started; `stop_all` is safe to call more than once."""

    def __init__(self) -> None:
        self.items: list[Service] = []

    def start(
        self, name: str, cmd: list[str], port: int, env: dict[str, str], logs: Path
    ) -> Service:
        service = Service(name, cmd, port, env, logs)
        self.items.append(service)
        return service

    def stop_all(self) -> None:
        for service in reversed(self.items):
            try:
                service.stop()
            except Exception as e:  # keep stopping the others
                print(f"could not stop {service.name} (pid {service.pid}): {e}", file=sys.stderr)


# -- /proc ------------------------------------------------------------------------------------


def _stat_fields(pid: int) -> list[str]:
    """Fields of /proc/<pid>/stat from field 3 (state) on: field n is at index n - 3."""
    text = Path(f"/proc/{pid}/stat").read_text()
    return text[text.rindex(")") + 2 :].split()


def descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            ppid = int(_stat_fields(int(entry.name))[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(entry.name))
    found: list[int] = []
    todo = list(children.get(pid, []))
    while todo:
        child = todo.pop()
        found.append(child)
        todo.extend(children.get(child, []))
    return found


def cpu_seconds(pid: int) -> float:
    """utime + stime of `pid` and its live descendants, plus its reaped children's."""
    fields = _stat_fields(pid)
    ticks = int(fields[11]) + int(fields[12]) + int(fields[13]) + int(fields[14])
    for child in descendants(pid):
        with contextlib.suppress(OSError, ValueError, IndexError):
            f = _stat_fields(child)
            ticks += int(f[11]) + int(f[12])
    return ticks / CLK_TCK


def rss_kb(pid: int) -> int:
    total = 0
    for p in [pid, *descendants(pid)]:
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{p}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total


def own_cpu_seconds() -> float:
    t = os.times()
    return t.user + t.system


def machine_cpu_seconds() -> tuple[float, float]:
    """(busy, stolen) CPU seconds of the whole machine so far, summed over its CPUs."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    user, nice, system, _idle, _iowait, irq, softirq, steal = fields
    return (user + nice + system + irq + softirq) / CLK_TCK, steal / CLK_TCK


class Noise:
    """How much of the machine's CPUs other processes (and the hypervisor) took meanwhile."""

    def __init__(self, pids: list[int]) -> None:
        self.pids = pids
        self.t0 = time.monotonic()
        self.ours0 = self._ours()
        self.busy0, self.steal0 = machine_cpu_seconds()

    def _ours(self) -> float:
        total = own_cpu_seconds()
        for pid in self.pids:
            with contextlib.suppress(OSError, ValueError, IndexError):
                total += cpu_seconds(pid)
        return total

    def cores(self) -> dict[str, float]:
        """Average CPUs busy with others' work and stolen, over the time since creation."""
        wall = time.monotonic() - self.t0
        busy, steal = machine_cpu_seconds()
        others = busy - self.busy0 - (self._ours() - self.ours0)
        return {
            "others_cores": round(max(0.0, others) / wall, 2),
            "stolen_cores": round((steal - self.steal0) / wall, 2),
        }


# -- targets and cases ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Case:
    label: str
    path: str
    body: dict[str, Any]
    headers: dict[str, str]
    reads: str  # the protocol of the answer the client reads: "openai" or "anthropic"

    def payload(self, stream: bool) -> bytes:
        return json.dumps({**self.body, "stream": stream}).encode()


def openai_case(path: str, model: str, label: str) -> Case:
    return Case(
        label,
        path,
        {"model": model, "messages": MESSAGES, "max_tokens": 32},
        {"authorization": f"Bearer {KEY}", "content-type": "application/json"},
        "openai",
    )


def anthropic_native_case() -> Case:
    return Case(
        "anthropic (native)",
        "/anthropic/v1/messages",
        {"model": ANTHROPIC_MODEL, "messages": MESSAGES, "max_tokens": 32},
        {"x-api-key": KEY, "anthropic-version": "2023-06-01", "content-type": "application/json"},
        "anthropic",
    )


def relay_cases() -> dict[str, Case]:
    """The cases of a target that only relays to the upstream's own paths."""
    return {
        "same": openai_case("/openai/v1/chat/completions", OPENAI_MODEL, "openai (native)"),
        "conv": anthropic_native_case(),
    }


def gateway_cases() -> dict[str, Case]:
    """The cases of a target running the chain: the gateway path, backend picked by model."""
    return {
        "same": openai_case("/v1/chat/completions", f"openai:{OPENAI_MODEL}", "openai->openai"),
        "conv": openai_case(
            "/v1/chat/completions", f"anthropic:{ANTHROPIC_MODEL}", "openai->anthropic"
        ),
    }


@dataclass(slots=True)
class TargetSpec:
    key: str
    label: str
    cmd: list[str]  # empty for direct
    env: dict[str, str]
    cases: dict[str, Case]
    port: int = 0


def target_specs(up_port: int, confdir: Path) -> list[TargetSpec]:
    """The targets in report order; `{port}`/`{confdir}` in a command are filled in here."""
    upstream = f"http://127.0.0.1:{up_port}"
    gateway_env = clean_env(
        {
            "OPENAI_API_KEY": KEY,
            "OPENAI_API_BASE_URL": f"{upstream}/openai/v1",
            "ANTHROPIC_API_KEY": KEY,
            "ANTHROPIC_API_BASE_URL": f"{upstream}/anthropic/v1",
        }
    )
    mitmdump = [str(BIN / "mitmdump"), "--set", "flow_detail=0", "--set", "termlog_verbosity=warn"]
    llm_proxy = [str(BIN / "llm-proxy")]
    relay_mode = ["--set", f"mode=reverse:{upstream}@127.0.0.1:{{port}}"]
    gateway = ["--set", "mode=reverse:http://127.0.0.1:9@127.0.0.1:{port}"]
    conf = ["--set", "confdir={confdir}"]
    # each run records into a fresh usage file of its own (not the repo's `llm_usage.db`,
    # which would grow from run to run and slow every insert into its indexes)
    no_env_file = ["--set", "llm_env_file="]
    own_usage = ["--set", "usage_db={confdir}/usage.db"]
    chain = [*mitmdump, "-s", "addons/chain.py", *gateway, *conf, *no_env_file, *own_usage]
    specs = [
        TargetSpec("direct", "direct (upstream)", [], {}, relay_cases(), up_port),
        TargetSpec(
            "mitmdump",
            "stock mitmdump",
            [*mitmdump, *relay_mode, *conf],
            clean_env(),
            relay_cases(),
        ),
        TargetSpec(
            "lean",
            "llm-proxy --bare",
            [*llm_proxy, "--bare", *relay_mode, *conf],
            clean_env(),
            relay_cases(),
        ),
        TargetSpec(
            "run",
            "llm-proxy (run)",
            [*llm_proxy, *gateway, *conf, *no_env_file, *own_usage],
            gateway_env,
            gateway_cases(),
        ),
        TargetSpec("chain", "mitmdump -s chain", chain, gateway_env, gateway_cases()),
        # a reference, not one of the five: stock mitmdump relaying streams chunk by chunk as
        # the chain does (stock mitmdump and --bare buffer whole responses), the floor of
        # mitmproxy's own per-chunk cost
        TargetSpec(
            "mitmdump_stream",
            "stock mitmdump streaming",
            [*mitmdump, "--set", "stream_large_bodies=1", *relay_mode, *conf],
            clean_env(),
            relay_cases(),
        ),
        # a reference: the floor of any proxy in Python, bytes forwarded as read, no HTTP
        TargetSpec(
            "byte_relay",
            "byte relay (floor)",
            [
                str(BIN / "python"),
                "bench/byte_relay.py",
                "--port",
                "{port}",
                "--upstream-port",
                str(up_port),
            ],
            clean_env(),
            relay_cases(),
        ),
        # a reference: the chain under mitmdump with mitmproxy's own hook dispatch (the chain
        # caches it by default): the chain's own hooks' cost over stock mitmdump
        TargetSpec(
            "chain_own",
            "mitmdump -s chain, own dispatch",
            [*chain, "--set", "llm_fast_dispatch=false"],
            gateway_env,
            gateway_cases(),
        ),
        # a reference: the run command without usage recording (its sqlite row per request)
        TargetSpec(
            "run_no_usage",
            "llm-proxy (run), usage_db=",
            [*llm_proxy, *gateway, *conf, *no_env_file, "--set", "usage_db="],
            gateway_env,
            gateway_cases(),
        ),
    ]
    for spec in specs[1:]:
        spec.port = free_port()
        own_confdir = confdir / spec.key
        own_confdir.mkdir(parents=True, exist_ok=True)
        spec.cmd = [a.format(port=spec.port, confdir=own_confdir) for a in spec.cmd]
    return specs


# -- measurements -----------------------------------------------------------------------------


@dataclass(slots=True)
class CaseData:
    """Raw samples of one case of one target, over all rounds."""

    lat_c1: list[float] = field(default_factory=list)  # ms
    lat_c32: list[float] = field(default_factory=list)  # ms
    c32_requests: int = 0
    c32_wall: float = 0.0
    c32_cpu: float = 0.0  # proxy CPU seconds during the c32 batches
    c32_cpu_batches: list[float] = field(default_factory=list)  # ms per request, per batch
    c32_client_cpu: float = 0.0  # the load generator's CPU seconds during them
    c32_upstream_cpu: float = 0.0
    ttfb: list[float] = field(default_factory=list)  # ms
    short_ttfb: list[float] = field(default_factory=list)  # ms, streams of SHORT_CHUNKS deltas
    total: list[float] = field(default_factory=list)  # ms
    stream_cpu: float = 0.0
    streams: int = 0
    errors: int = 0
    first_error: str | None = None
    broken: bool = False  # every warm-up request failed: not measured

    def fail(self, message: str) -> None:
        self.errors += 1
        if self.first_error is None:
            self.first_error = message


@dataclass(slots=True)
class Target:
    spec: TargetSpec
    pid: int  # the process whose CPU/RSS is read (the upstream for direct)
    upstream_pid: int
    s1: aiohttp.ClientSession
    s32: aiohttp.ClientSession
    data: dict[str, CaseData]
    requests: int = 0  # since the first RSS reading
    rss: list[tuple[int, int]] = field(default_factory=list)  # (requests so far, kB)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.spec.port}"

    @property
    def is_proxy(self) -> bool:
        return self.spec.key != "direct"


def marker(case: Case) -> bytes:
    return b'"choices"' if case.reads == "openai" else b'"stop_reason"'


def end_marker(case: Case) -> bytes:
    return b"[DONE]" if case.reads == "openai" else b"message_stop"


async def one_request(
    session: aiohttp.ClientSession, url: str, case: Case, payload: bytes, data: CaseData
) -> float | None:
    """The latency of one non-streamed call in ms, or None (recorded as an error)."""
    t0 = time.perf_counter()
    try:
        async with session.post(url, data=payload, headers=case.headers) as resp:
            body = await resp.read()
            status = resp.status
    except (aiohttp.ClientError, TimeoutError) as e:
        data.fail(f"{type(e).__name__}: {e}")
        return None
    elapsed = (time.perf_counter() - t0) * 1000
    if status != 200 or marker(case) not in body:
        data.fail(f"{status} {body[:300]!r}")
        return None
    return elapsed


async def load(
    target: Target, case_key: str, n: int, concurrency: int
) -> tuple[list[float], float]:
    """`n` non-streamed calls with `concurrency` in flight: (latencies in ms, wall seconds)."""
    case = target.spec.cases[case_key]
    data = target.data[case_key]
    session = target.s1 if concurrency == 1 else target.s32
    url = target.url + case.path
    payload = case.payload(stream=False)
    latencies: list[float] = []
    remaining = n

    async def worker() -> None:
        nonlocal remaining
        while remaining > 0:
            remaining -= 1
            ms = await one_request(session, url, case, payload, data)
            if ms is not None:
                latencies.append(ms)

    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    target.requests += n
    return latencies, time.perf_counter() - t0


async def one_stream(
    target: Target, case_key: str, chunks: int = STREAM_CHUNKS
) -> tuple[float, float] | None:
    """(first byte ms, total ms) of one streamed call of `chunks` text deltas, or None (recorded
    as an error)."""
    case = target.spec.cases[case_key]
    data = target.data[case_key]
    headers = {**case.headers, CHUNKS_HEADER: str(chunks)}
    parts: list[bytes] = []
    t0 = time.perf_counter()
    try:
        async with target.s1.post(
            target.url + case.path, data=case.payload(stream=True), headers=headers
        ) as resp:
            if resp.status != 200:
                data.fail(f"stream {resp.status} {(await resp.read())[:300]!r}")
                return None
            first = await resp.content.readany()
            ttfb = time.perf_counter() - t0
            parts.append(first)
            while chunk := await resp.content.readany():
                parts.append(chunk)
            total = time.perf_counter() - t0
    except (aiohttp.ClientError, TimeoutError) as e:
        data.fail(f"stream {type(e).__name__}: {e}")
        return None
    target.requests += 1
    body = b"".join(parts)
    deltas = body.count(DELTA)
    if deltas != chunks or end_marker(case) not in body[-200:]:
        data.fail(f"stream: {deltas} of {chunks} deltas, ends {body[-120:]!r}")
        return None
    return ttfb * 1000, total * 1000


async def measure_c32(target: Target, case_key: str, n: int) -> None:
    data = target.data[case_key]
    cpu0, own0, up0 = cpu_seconds(target.pid), own_cpu_seconds(), cpu_seconds(target.upstream_pid)
    latencies, wall = await load(target, case_key, n, 32)
    # work the batch left behind (the usage writer commits its last rows up to 1 s after them)
    # is the batch's CPU, and must not land in the next phase's streams
    await asyncio.sleep(SETTLE_S)
    cpu = cpu_seconds(target.pid) - cpu0
    data.c32_cpu += cpu
    data.c32_cpu_batches.append(round(cpu * 1000 / n, 3))
    data.c32_client_cpu += own_cpu_seconds() - own0
    data.c32_upstream_cpu += cpu_seconds(target.upstream_pid) - up0
    data.c32_requests += n
    data.c32_wall += wall
    data.lat_c32 += latencies


async def measure_streams(target: Target, case_key: str, runs: int) -> None:
    data = target.data[case_key]
    cpu0 = cpu_seconds(target.pid)
    for _ in range(runs):
        got = await one_stream(target, case_key)
        if got is not None:
            data.ttfb.append(got[0])
            data.total.append(got[1])
    data.stream_cpu += cpu_seconds(target.pid) - cpu0
    data.streams += runs
    for _ in range(runs * SHORT_PER_LONG):
        got = await one_stream(target, case_key, SHORT_CHUNKS)
        if got is not None:
            data.short_ttfb.append(got[0])


async def warm_up(target: Target, counts: Counts) -> None:
    for key, data in target.data.items():
        latencies, _ = await load(target, key, counts.warmup, 32)
        if not latencies:
            data.broken = True
            continue
        await load(target, key, max(10, counts.warmup // 10), 1)
        await one_stream(target, key)
        data.errors, data.first_error = 0, None  # count only the measured phases' errors
    target.requests = 0
    if target.is_proxy:
        target.rss.append((0, rss_kb(target.pid)))


async def measure_round(target: Target, counts: Counts) -> None:
    live = [k for k, d in target.data.items() if not d.broken]
    for key in live:
        latencies, _ = await load(target, key, counts.c1, 1)
        target.data[key].lat_c1 += latencies
    for key in live:
        await measure_c32(target, key, counts.c32)
    for key in live:
        await measure_streams(target, key, counts.streams)
    if target.is_proxy:
        target.rss.append((target.requests, rss_kb(target.pid)))


async def top_up_for_rss(target: Target, counts: Counts) -> None:
    """Enough extra calls that at least `rss_requests` were made since the first RSS reading."""
    live = [k for k, d in target.data.items() if not d.broken]
    missing = counts.rss_requests - target.requests
    if not target.is_proxy or not live or missing <= 0:
        return
    for i, key in enumerate(live):
        share = missing // len(live) + (1 if i < missing % len(live) else 0)
        await load(target, key, share, 32)
    target.rss.append((target.requests, rss_kb(target.pid)))


# -- summaries --------------------------------------------------------------------------------


def pct(values: list[float], p: int) -> float | None:
    if not values:
        return None
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[p - 1]


def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def per_request_ms(seconds: float, n: int) -> float | None:
    return seconds * 1000 / n if n else None


@dataclass(slots=True)
class CaseSummary:
    label: str
    measured: bool
    errors: int
    first_error: str | None
    c1_p50: float | None
    c1_p99: float | None
    c32_p50: float | None
    c32_p99: float | None
    rps: float | None
    cpu_ms: float | None  # proxy CPU per request at c32 (the upstream's own for direct)
    cpu_ms_batches: list[float]  # the same, per batch (one per round): its spread
    client_cpu_ms: float | None
    upstream_cpu_ms: float | None
    stream_ttfb: float | None
    stream_total: float | None
    short_ttfb: float | None  # first byte of a 1-delta stream
    stream_cpu_ms: float | None  # proxy CPU per stream
    samples: dict[str, int]
    stream_ttfb_ms: list[float]  # every long stream's first byte and total, in the order run
    stream_total_ms: list[float]


@dataclass(slots=True)
class TargetSummary:
    key: str
    label: str
    command: list[str]
    cases: dict[str, CaseSummary]
    rss_before_mb: float | None
    rss_after_mb: float | None
    rss_requests: int
    rss_series: list[tuple[int, int]]


def summarize_case(case: Case, d: CaseData) -> CaseSummary:
    ok = not d.broken and d.errors == 0
    return CaseSummary(
        label=case.label,
        measured=not d.broken,
        errors=d.errors,
        first_error=d.first_error,
        c1_p50=pct(d.lat_c1, 50),
        c1_p99=pct(d.lat_c1, 99),
        c32_p50=pct(d.lat_c32, 50),
        c32_p99=pct(d.lat_c32, 99),
        rps=d.c32_requests / d.c32_wall if ok and d.c32_wall else None,
        cpu_ms=per_request_ms(d.c32_cpu, d.c32_requests) if ok else None,
        cpu_ms_batches=d.c32_cpu_batches,
        client_cpu_ms=per_request_ms(d.c32_client_cpu, d.c32_requests),
        upstream_cpu_ms=per_request_ms(d.c32_upstream_cpu, d.c32_requests),
        stream_ttfb=median(d.ttfb),
        stream_total=median(d.total),
        short_ttfb=median(d.short_ttfb),
        stream_cpu_ms=per_request_ms(d.stream_cpu, d.streams) if ok else None,
        samples={
            "c1": len(d.lat_c1),
            "c32": len(d.lat_c32),
            "streams": len(d.total),
            "short_streams": len(d.short_ttfb),
        },
        stream_ttfb_ms=[round(x, 3) for x in d.ttfb],
        stream_total_ms=[round(x, 3) for x in d.total],
    )


def summarize(target: Target) -> TargetSummary:
    rss = target.rss
    return TargetSummary(
        key=target.spec.key,
        label=target.spec.label,
        command=target.spec.cmd,
        cases={k: summarize_case(target.spec.cases[k], d) for k, d in target.data.items()},
        rss_before_mb=rss[0][1] / KB_PER_MB if rss else None,
        rss_after_mb=rss[-1][1] / KB_PER_MB if len(rss) > 1 else None,
        rss_requests=rss[-1][0] if rss else 0,
        rss_series=rss,
    )


# -- report -----------------------------------------------------------------------------------


def fmt(value: float | None, spec: str = ".2f", prefix: str = "") -> str:
    if value is None:
        return "-"
    return f"{prefix}{value:{spec}}"


def diff(a: float | None, b: float | None) -> float | None:
    return a - b if a is not None and b is not None else None


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}" if values else "-"


def fdiff(a: float | None, b: float | None) -> str:
    return fmt(diff(a, b), "+.2f")


def fratio(a: float | None, b: float | None) -> str:
    return fmt(ratio(a, b), ".2f", "x")


def table(title: str, headers: list[str], rows: list[list[str]]) -> str:
    widths = [max(len(str(r[i])) for r in [headers, *rows]) for i in range(len(headers))]
    line = "  ".join("-" * w for w in widths)

    def render(row: list[str]) -> str:
        cells = [row[0].ljust(widths[0]), row[1].ljust(widths[1])]
        cells += [c.rjust(w) for c, w in zip(row[2:], widths[2:], strict=True)]
        return "  ".join(cells)

    return "\n".join([title, render(headers), line, *(render(r) for r in rows)])


Rows = Callable[[TargetSummary, str, CaseSummary, CaseSummary, CaseSummary | None], list[str]]


def case_rows(summaries: list[TargetSummary], build: Rows) -> list[list[str]]:
    """One row per target and case; `build` gets the case and its direct and stock baselines."""
    by_key = {s.key: s for s in summaries}
    rows = []
    for s in summaries:
        for key, c in s.cases.items():
            direct = by_key["direct"].cases[key]
            stock = by_key["mitmdump"].cases[key] if "mitmdump" in by_key else None
            rows.append(build(s, key, c, direct, stock))
    return rows


def latency_table(summaries: list[TargetSummary]) -> str:
    def build(
        s: TargetSummary, key: str, c: CaseSummary, d: CaseSummary, _: CaseSummary | None
    ) -> list[str]:
        return [
            s.label,
            c.label,
            fmt(c.c1_p50),
            fmt(c.c1_p99),
            fdiff(c.c1_p50, d.c1_p50),
            fdiff(c.c1_p99, d.c1_p99),
            fmt(c.c32_p50),
            fmt(c.c32_p99),
            fdiff(c.c32_p50, d.c32_p50),
            fdiff(c.c32_p99, d.c32_p99),
        ]

    headers = [
        "target",
        "case",
        "c1 p50",
        "c1 p99",
        "added p50",
        "added p99",
        "c32 p50",
        "c32 p99",
        "added p50",
        "added p99",
    ]
    return table(
        "Small non-streamed request, latency in ms (added = target - direct)",
        headers,
        case_rows(summaries, build),
    )


def throughput_table(summaries: list[TargetSummary]) -> str:
    def build(
        s: TargetSummary, key: str, c: CaseSummary, d: CaseSummary, m: CaseSummary | None
    ) -> list[str]:
        stock = m.cpu_ms if m else None
        cpu = fmt(c.cpu_ms, ".3f")
        if s.key == "direct":
            cpu = f"({fmt(c.cpu_ms, '.3f')} upstream)"
        return [
            s.label,
            c.label,
            fmt(c.rps, ".0f"),
            fratio(c.rps, d.rps),
            fratio(c.rps, m.rps if m else None),
            cpu,
            fdiff(c.cpu_ms, stock) if s.key != "direct" else "-",
            fratio(c.cpu_ms, stock) if s.key != "direct" else "-",
            spread(c.cpu_ms_batches),
            fmt(c.client_cpu_ms, ".3f"),
            fmt(c.upstream_cpu_ms, ".3f"),
        ]

    headers = [
        "target",
        "case",
        "req/s",
        "vs direct",
        "vs stock",
        "CPU ms/req",
        "-stock ms",
        "vs stock",
        "CPU per round",
        "client ms/req",
        "upstream ms/req",
    ]
    return table(
        "Concurrency 32: requests/s and proxy CPU per request (utime+stime from /proc)",
        headers,
        case_rows(summaries, build),
    )


def stream_table(summaries: list[TargetSummary]) -> str:
    def build(
        s: TargetSummary, key: str, c: CaseSummary, d: CaseSummary, m: CaseSummary | None
    ) -> list[str]:
        return [
            s.label,
            c.label,
            fmt(c.stream_ttfb),
            fdiff(c.stream_ttfb, d.stream_ttfb),
            fmt(c.stream_total, ".1f"),
            fratio(c.stream_total, d.stream_total),
            fratio(c.stream_total, m.stream_total if m else None),
            fmt(c.stream_cpu_ms, ".1f") if s.key != "direct" else "-",
            fmt(c.short_ttfb),
            fdiff(c.short_ttfb, d.short_ttfb),
            f"{c.samples['streams']}+{c.samples['short_streams']}",
        ]

    headers = [
        "target",
        "case",
        "TTFB ms",
        "vs direct",
        "total ms",
        "vs direct",
        "vs stock",
        "CPU ms/stream",
        "1-delta TTFB",
        "vs direct",
        "runs",
    ]
    title = (
        f"{STREAM_CHUNKS:,}-chunk stream, medians (TTFB = first body byte; the upstream sends "
        f"as fast as it can). 1-delta TTFB: a stream of {SHORT_CHUNKS} delta, no flood behind "
        "its first byte"
    )
    return table(title, headers, case_rows(summaries, build))


def memory_table(summaries: list[TargetSummary]) -> str:
    rows = [
        [
            s.label,
            "",
            fmt(s.rss_before_mb, ".1f"),
            fmt(s.rss_after_mb, ".1f"),
            fdiff(s.rss_after_mb, s.rss_before_mb),
            f"{s.rss_requests:,}",
        ]
        for s in summaries
        if s.key != "direct"
    ]
    headers = ["target", "", "RSS before MB", "RSS after MB", "growth MB", "requests between"]
    return table("Proxy RSS (VmRSS, process and children)", headers, rows)


def error_lines(summaries: list[TargetSummary]) -> list[str]:
    lines = []
    for s in summaries:
        for c in s.cases.values():
            if not c.measured:
                lines.append(
                    f"  {s.label} / {c.label}: NOT MEASURED, warm-up failed: {c.first_error}"
                )
            elif c.errors:
                lines.append(f"  {s.label} / {c.label}: {c.errors} errors, first: {c.first_error}")
    return lines


# -- checks -----------------------------------------------------------------------------------


@dataclass(slots=True)
class Check:
    name: str
    value: float | None
    limit: str
    passed: bool


def check(name: str, value: float | None, limit: float, at_most: bool, unit: str) -> Check:
    passed = value is not None and (value <= limit if at_most else value >= limit)
    sign = "<=" if at_most else ">="
    return Check(name, value, f"{sign} {limit:g}{unit}", passed)


def checks(summaries: list[TargetSummary], counts: Counts) -> list[Check]:
    by = {s.key: s for s in summaries}
    run, chain, stock, direct = by["run"], by["chain"], by["mitmdump"], by["direct"]
    rs, rc = run.cases["same"], run.cases["conv"]
    conv_direct = direct.cases["conv"]
    growth = diff(run.rss_after_mb, run.rss_before_mb)
    if run.rss_requests < counts.rss_requests:
        growth = None
    return [
        check("run: CPU per same-protocol request (ms)", rs.cpu_ms, MAX_CPU_SAME_MS, True, " ms"),
        check("run: CPU per converted request (ms)", rc.cpu_ms, MAX_CPU_CONV_MS, True, " ms"),
        check("run: requests/s at concurrency 32 (same-protocol)", rs.rps, MIN_RPS, False, ""),
        check(
            "chain: CPU over stock mitmdump, same-protocol (ms)",
            diff(chain.cases["same"].cpu_ms, stock.cases["same"].cpu_ms),
            MAX_CHAIN_OVER_STOCK_MS,
            True,
            " ms",
        ),
        check(
            "run: converted stream total / direct",
            ratio(rc.stream_total, conv_direct.stream_total),
            MAX_STREAM_TOTAL_RATIO,
            True,
            "x",
        ),
        check(
            "run: converted stream first byte - direct (ms)",
            diff(rc.stream_ttfb, conv_direct.stream_ttfb),
            MAX_STREAM_TTFB_ADDED_MS,
            True,
            " ms",
        ),
        check(
            f"run: RSS growth after {run.rss_requests:,} requests (MB)",
            growth,
            MAX_RSS_GROWTH_MB,
            True,
            " MB",
        ),
    ]


def check_lines(results: list[Check]) -> list[str]:
    width = max(len(c.name) for c in results)
    return [
        f"  {'PASS' if c.passed else 'FAIL'}  {c.name.ljust(width)}  "
        f"{fmt(c.value, '.3f'):>9}  (target {c.limit})"
        for c in results
    ]


def report(summaries: list[TargetSummary], results: list[Check], meta: dict[str, Any]) -> str:
    parts = [
        f"Relay benchmark {'(QUICK smoke run) ' if meta['quick'] else ''}- {meta['time']}, "
        f"{meta['cpus']} CPUs, load avg at start {meta['loadavg']}",
        "Load generator (aiohttp, this process), upstream and proxy share the CPUs: latency "
        "and req/s include that contention; CPU ms/req is the proxy PID's own.",
        f"Other processes on the machine used {meta['others_cores']} CPUs on average during "
        f"the run, the hypervisor stole {meta['stolen_cores']}.",
        "Cases: same = OpenAI client -> OpenAI backend; conv = OpenAI client -> Anthropic "
        "backend through the chain, and the upstream's native Anthropic endpoint for the "
        f"relays that cannot convert. Counts: {meta['counts']}",
        "Stock mitmdump and llm-proxy --bare buffer whole responses (no stream_large_bodies): "
        "their stream TTFB is about their total time; the chain streams. 'stock mitmdump "
        "streaming' (stream_large_bodies=1) is a reference, not a target: mitmproxy's own "
        "per-chunk relay cost.",
        "'byte relay (floor)' is a reference: bytes forwarded as read, no HTTP; what any proxy "
        "in Python adds at least. "
        "'mitmdump -s chain, own dispatch' (llm_fast_dispatch=false) is a reference too: the "
        "chain in a mitmdump whose hook dispatch it leaves as mitmproxy made it (by default the "
        "chain caches it, addons/dispatch.py); its -stock figure is what the chain's own hooks "
        "cost.",
        "",
        latency_table(summaries),
        "",
        throughput_table(summaries),
        "",
        stream_table(summaries),
        "",
        memory_table(summaries),
    ]
    errors = error_lines(summaries)
    if errors:
        parts += ["", "Errors:", *errors]
    parts += ["", "Targets:", *check_lines(results)]
    return "\n".join(parts)


# -- the run ----------------------------------------------------------------------------------


def new_session(limit: int) -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=120)
    return aiohttp.ClientSession(
        connector=connector,
        cookie_jar=aiohttp.DummyCookieJar(),
        auto_decompress=False,
        trust_env=False,
        timeout=aiohttp.ClientTimeout(total=120),
    )


def rotated[T](items: list[T], by: int) -> Iterator[T]:
    for i in range(len(items)):
        yield items[(i + by) % len(items)]


def protocol_files() -> list[str]:
    return sorted(p.name for p in (REPO / "protocol").glob("*.py"))


def git_commit() -> str | None:
    with contextlib.suppress(OSError, subprocess.SubprocessError):
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or None
    return None


async def start_all(
    services: Services, tmp: Path
) -> tuple[Service, list[tuple[TargetSpec, Service]]]:
    up_port = free_port()
    upstream = services.start(
        "upstream",
        [
            sys.executable,
            str(REPO / "bench" / "upstream.py"),
            "--port",
            str(up_port),
            "--stream-chunks",
            str(STREAM_CHUNKS),
        ],
        up_port,
        clean_env(),
        tmp,
    )
    specs = target_specs(up_port, tmp / "confdir")
    started = [
        (spec, services.start(spec.key, spec.cmd, spec.port, spec.env, tmp))
        for spec in specs
        if spec.cmd
    ]
    await asyncio.gather(upstream.wait_ready(), *(s.wait_ready() for _, s in started))
    return upstream, [(specs[0], upstream), *started]


async def bench(counts: Counts, quick: bool, services: Services, tmp: Path) -> dict[str, Any]:
    meta: dict[str, Any] = {
        "quick": quick,
        "time": time.strftime("%Y-%m-%d %H:%M:%S"),
        "cpus": os.cpu_count(),
        "loadavg": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "counts": asdict(counts),
        "stream_chunks": STREAM_CHUNKS,
        "python": platform.python_version(),
        "commit": git_commit(),
        "protocol_files": protocol_files(),
    }
    t_start = time.monotonic()
    print("starting upstream and targets ...", flush=True)
    upstream, started = await start_all(services, tmp)
    targets: list[Target] = []
    async with contextlib.AsyncExitStack() as stack:
        for spec, service in started:
            s1 = await stack.enter_async_context(new_session(1))
            s32 = await stack.enter_async_context(new_session(32))
            data = {k: CaseData() for k in spec.cases}
            targets.append(Target(spec, service.pid, upstream.pid, s1, s32, data))
        noise = Noise([s.pid for s in services.items])
        for t in targets:
            print(f"warming up {t.spec.label} ...", flush=True)
            await warm_up(t, counts)
        for r in range(counts.rounds):
            for t in rotated(targets, r):
                print(f"round {r + 1}/{counts.rounds}: {t.spec.label} ...", flush=True)
                await measure_round(t, counts)
        for t in targets:
            await top_up_for_rss(t, counts)
        meta.update(noise.cores())
    meta["seconds"] = round(time.monotonic() - t_start, 1)
    summaries = [summarize(t) for t in targets]
    results = checks(summaries, counts)
    print()
    print(report(summaries, results, meta))
    print(f"\n(run took {meta['seconds']} s)")
    return {
        "meta": meta,
        "targets": [asdict(s) for s in summaries],
        "checks": [asdict(c) for c in results],
    }


def write_results(results: dict[str, Any]) -> Path:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"relay-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.write_text(json.dumps(results, indent=2) + "\n")
    return path


def _terminate(signum: int, frame: object) -> NoReturn:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Relay benchmark of the LLM proxy.")
    parser.add_argument("--quick", action="store_true", help="small counts: a smoke run")
    args = parser.parse_args(argv)
    counts = QUICK if args.quick else FULL
    signal.signal(signal.SIGTERM, _terminate)
    services = Services()
    with tempfile.TemporaryDirectory(prefix="relay-bench-") as tmp:
        try:
            results = asyncio.run(bench(counts, args.quick, services, Path(tmp)))
        except KeyboardInterrupt:
            print("\ninterrupted: stopping everything", file=sys.stderr)
            return 130
        except Exception:
            for service in services.items:
                if service.proc.poll() is not None:
                    print(
                        f"--- {service.name} exited; log tail:\n{service.log_tail()}",
                        file=sys.stderr,
                    )
            raise
        finally:
            services.stop_all()
    print(f"results: {write_results(results).relative_to(REPO)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

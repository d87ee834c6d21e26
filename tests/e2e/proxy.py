"""Start the real proxy as a subprocess, the way the README's run command does.

`make run` installs and then runs `.venv/bin/llm-proxy`; tests run that same launcher (or stock
`mitmdump -s addons/chain.py`) with `--set` options for free ports and a temporary confdir,
and wait for the "listening at" line of each listener.
"""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Mapping
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class ProxyProcess:
    """A running proxy; `.url` is the gateway base (`http://127.0.0.1:PORT`)."""

    def __init__(
        self,
        env: Mapping[str, str],
        *,
        launcher: str = "llm-proxy",
        confdir: Path,
        intercept: bool = False,
        extra: list[str] | None = None,
        as_run_command: bool = False,
        scripts: list[Path] | None = None,
    ) -> None:
        self.port = free_port()
        self.intercept_port = free_port() if intercept else None
        modes = [f"reverse:http://127.0.0.1:9@127.0.0.1:{self.port}"]
        if self.intercept_port:
            modes.append(f"regular@127.0.0.1:{self.intercept_port}")
        # as_run_command: only what makes the run command testable here (free ports, a temp
        # confdir, a temp usage file); no other option is set, as with `make run`
        args = [f"mode={m}" for m in modes] + [
            f"confdir={confdir}",
            f"usage_db={confdir}/usage.db",
            *([] if as_run_command else ["llm_env_file="]),
            *(extra or []),
        ]
        if launcher == "llm-proxy":
            cmd = [str(BIN / "llm-proxy")]
        else:
            cmd = [str(BIN / launcher), "-s", "addons/chain.py"]
            for path in scripts or []:  # a user's own scripts, loaded after the chain
                cmd += ["-s", str(path)]
            if launcher == "mitmdump":
                cmd += ["--set", "flow_detail=0"]
        for a in args:
            cmd += ["--set", a]
        full_env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
        full_env.update(env)
        full_env["NO_PROXY"] = "127.0.0.1,localhost"
        self.usage_db = Path(confdir) / "usage.db"
        self.output: list[str] = []
        self.proc = subprocess.Popen(
            cmd,
            cwd=REPO,
            env=full_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        self._ready = threading.Event()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_listening()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _read(self) -> None:
        assert self.proc.stdout is not None
        wanted = {self.port} | ({self.intercept_port} if self.intercept_port else set())
        seen: set[int] = set()
        for line in self.proc.stdout:
            self.output.append(line)
            m = re.search(r"listening at .*?:(\d+)", line)
            if m:
                seen.add(int(m.group(1)))
                if wanted <= seen:
                    self._ready.set()

    def _wait_listening(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ready.wait(0.05):
                return
            if self.proc.poll() is not None:
                break
        log = "".join(self.output)
        self.stop()
        raise RuntimeError(f"proxy did not start listening:\n{log}")

    def log(self) -> str:
        return "".join(self.output)

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._reader.join(2)

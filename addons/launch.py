"""The `llm-proxy` command: the lean master (`addons.serve`) under `python -O`.

mitmproxy keeps debug-only checks behind `__debug__`: a runtime type check of every field of
every HTTP request and response it parses, and a type check of every event its protocol layers
handle. Under `-O` Python drops them (and every `assert`, which this project uses only to state
invariants): about 15% less CPU per request, measured with `bench/relay.py`. The command
replaces itself (same process id) with `python -O -m addons.serve ...`. Set
`LLM_PROXY_DEBUG_CHECKS=1` to keep the checks (for work on the addons; a value that is not a
yes or a no is an error), or run `python -m addons.serve` directly.
"""

from __future__ import annotations

import os
import sys

from protocol.env import env_bool

DEBUG_CHECKS = "LLM_PROXY_DEBUG_CHECKS"


def main() -> None:
    try:
        keep_checks = env_bool(os.environ, DEBUG_CHECKS, False)
    except ValueError as e:
        print(f"llm-proxy: {e}", file=sys.stderr)
        sys.exit(2)
    if sys.flags.optimize or keep_checks:
        from addons.serve import main as serve

        serve()
        return
    os.execv(sys.executable, [sys.executable, "-O", "-m", "addons.serve", *sys.argv[1:]])

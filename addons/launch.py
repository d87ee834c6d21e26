"""The `llm-proxy` command: the lean master (`addons.serve`) under `python -O`.

mitmproxy keeps debug-only checks behind `__debug__`: a runtime type check of every field of
every HTTP request and response it parses, and a type check of every event its protocol layers
handle. Under `-O` Python drops them (and every `assert`, which this project uses only to state
invariants): about 15% less CPU per request, measured with `bench/relay.py`. The command
replaces itself (same process id) with `python -O -m addons.serve ...`. Set
`LLM_PROXY_DEBUG_CHECKS=1` to keep the checks (for work on the addons), or run
`python -m addons.serve` directly.
"""

from __future__ import annotations

import os
import sys


def main() -> None:
    if sys.flags.optimize or os.environ.get("LLM_PROXY_DEBUG_CHECKS"):
        from addons.serve import main as serve

        serve()
        return
    os.execv(sys.executable, [sys.executable, "-O", "-m", "addons.serve", *sys.argv[1:]])

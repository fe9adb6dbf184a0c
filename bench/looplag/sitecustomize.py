"""Benchmark-only loop-lag trace: name every callback that holds the event loop.

Put this directory first on the daemon's PYTHONPATH with
SB_BENCH_SLOW_CALLBACK_MS set (and SB_BENCH_SLOW_CALLBACK_LOG naming a file,
else stderr); Python imports `sitecustomize` at start-up. Every event loop
made afterwards runs in asyncio's debug mode, which logs each callback or
task step that ran longer than the threshold, by name (the coroutine and the
line it was at) and duration: "Executing <Task ... coro=<Api.declare() running
at .../api.py:412>> took 0.061 seconds". Debug mode adds overhead of its own,
so the figures of a traced run are not the benchmark's figures: the trace says
where the loop is held, the untraced run says for how long.

Nothing in `switchboard/` reads the variables or knows this exists.
`bench/slowdisk/` can be combined with it (both directories on PYTHONPATH:
only the first `sitecustomize` is imported, so this one imports the other).
"""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from typing import Any

_MS = float(os.environ.get("SB_BENCH_SLOW_CALLBACK_MS", "0"))


def _install(threshold: float, log: str | None) -> None:
    handler: logging.Handler = (logging.FileHandler(log) if log
                                else logging.StreamHandler(sys.stderr))
    handler.setFormatter(logging.Formatter("%(created).3f %(message)s"))
    logger = logging.getLogger("asyncio")
    logger.addHandler(handler)
    logger.setLevel(logging.WARNING)
    logger.propagate = False  # the daemon's own log format stays as it is
    made = asyncio.BaseEventLoop.__init__

    def traced(self: asyncio.BaseEventLoop, *args: Any, **kwargs: Any) -> None:
        made(self, *args, **kwargs)
        self.set_debug(True)
        self.slow_callback_duration = threshold

    asyncio.BaseEventLoop.__init__ = traced  # type: ignore[method-assign]


def _chain() -> None:
    """Import the next `sitecustomize` on the path (the slow-disk shim), if any."""
    here = os.path.dirname(os.path.abspath(__file__))
    for entry in sys.path:
        other = os.path.join(entry, "sitecustomize.py")
        if os.path.abspath(entry) != here and os.path.exists(other):
            import importlib.util
            spec = importlib.util.spec_from_file_location("_sb_next_sitecustomize", other)
            if spec is not None and spec.loader is not None:
                spec.loader.exec_module(importlib.util.module_from_spec(spec))
            return


if _MS > 0:
    _install(_MS / 1000, os.environ.get("SB_BENCH_SLOW_CALLBACK_LOG") or None)
_chain()

"""`python -m bench [--quick] [--only NAME ...] [--list]`: run the benchmarks.

Prints one JSON object per benchmark on stdout (progress goes to stderr).
Exit status: 0 when every target was met (or in quick mode, where targets
are not judged), 1 when a full-mode target was missed, 2 when a benchmark
crashed.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import traceback
from collections.abc import Callable

from bench.console import console_pages
from bench.dispatch import dispatch_lateness, dispatch_startup
from bench.failover import failover
from bench.fanout import fanout
from bench.harness import Result
from bench.incident import declare_ack, leak_race
from bench.ingest import alertmanager_ingest
from bench.loopstall import loop_stall
from bench.schedule import bulk_schedule

BENCHMARKS: dict[str, Callable[[bool], Result]] = {
    "dispatch_startup": dispatch_startup,
    "bulk_schedule": bulk_schedule,
    "dispatch_lateness": dispatch_lateness,
    "declare_ack": declare_ack,
    "leak_race": leak_race,
    "alertmanager_ingest": alertmanager_ingest,
    "loop_stall": loop_stall,
    "fanout": fanout,
    "console_pages": console_pages,
    "failover": failover,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="small counts, a smoke test: figures only, targets not judged")
    parser.add_argument("--only", action="append", choices=sorted(BENCHMARKS), metavar="NAME",
                        help="run only this benchmark (repeatable)")
    parser.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = parser.parse_args(argv)
    if args.list:
        print("\n".join(BENCHMARKS))
        return 0
    failed = crashed = False
    for name in args.only or list(BENCHMARKS):
        print(f"bench: {name} ({'quick' if args.quick else 'full'}) ...", file=sys.stderr,
              flush=True)
        started = time.monotonic()
        try:
            result = BENCHMARKS[name](args.quick)
        except Exception as exc:
            traceback.print_exc()
            crashed = True
            print(json.dumps({"name": name, "params": {}, "figures": {}, "target": {},
                              "checks": {}, "pass": False, "error": repr(exc)}), flush=True)
            continue
        print(result.line(), flush=True)
        failed |= result.passed is False
        missed = [k for k, ok in result.checks.items() if not ok]
        print(f"bench: {name} took {time.monotonic() - started:.0f} s"
              + (f"; missed: {', '.join(missed)}" if missed else ""), file=sys.stderr,
              flush=True)
    return 2 if crashed else 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

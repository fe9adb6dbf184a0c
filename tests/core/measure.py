"""Line coverage of the core by the in-process suite alone (`make coverage-core`).

Runs tests/core under coverage in a subprocess and reports, per module and per
part (publisher, incidents, steps, gate), the share of lines the suite runs.
Exits 1 when a part is under MINIMUM.
"""

from __future__ import annotations

import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import coverage

ROOT = Path(__file__).resolve().parents[2]
MINIMUM = 90.0
PARTS = {
    "publisher": ("switchboard/publisher/*.py",),
    "incidents": ("switchboard/incidents/*.py",),
    "steps": ("switchboard/steps.py",),
    "gate": ("switchboard/gate.py",),
}
SELF = "tests/core/test_coverage.py"  # the test that runs this: not run again inside


@dataclass(frozen=True)
class Figure:
    name: str
    statements: int
    missed: int

    @property
    def percent(self) -> float:
        return 100.0 if not self.statements else 100.0 * (1 - self.missed / self.statements)


def run_suite(data_file: Path) -> float:
    """Run tests/core under coverage; the wall seconds it took."""
    started = time.monotonic()
    subprocess.run([sys.executable, "-m", "coverage", "run", f"--data-file={data_file}",
                    "--source=switchboard", "-m", "pytest", "tests/core", "-q",
                    "-p", "no:cacheprovider", f"--ignore={SELF}"],
                   cwd=ROOT, check=True, stdout=subprocess.DEVNULL)
    return time.monotonic() - started


def figures(data_file: Path) -> tuple[list[Figure], list[Figure]]:
    """(each module, each part) as the run in `data_file` covered them."""
    cov = coverage.Coverage(data_file=str(data_file))
    cov.load()
    modules: list[Figure] = []
    parts: list[Figure] = []
    for part, patterns in PARTS.items():
        mine = [_module(cov, path) for pattern in patterns
                for path in sorted(ROOT.glob(pattern))]
        modules += mine
        parts.append(Figure(part, sum(m.statements for m in mine),
                            sum(m.missed for m in mine)))
    return modules, parts


def _module(cov: coverage.Coverage, path: Path) -> Figure:
    _, statements, _, missing, _ = cov.analysis2(str(path))
    return Figure(str(path.relative_to(ROOT)), len(statements), len(missing))


def table(modules: list[Figure], parts: list[Figure], seconds: float) -> str:
    lines = [f"{'module':<40} {'lines':>6} {'missed':>6} {'cover':>7}"]
    lines += [f"{m.name:<40} {m.statements:>6} {m.missed:>6} {m.percent:>6.1f}%"
              for m in modules]
    lines.append("")
    lines += [f"{p.name:<40} {p.statements:>6} {p.missed:>6} {p.percent:>6.1f}%"
              for p in parts]
    lines.append(f"\ntests/core under coverage: {seconds:.1f} s")
    return "\n".join(lines)


def main() -> int:
    with tempfile.TemporaryDirectory() as tmp:
        data_file = Path(tmp) / ".coverage"
        seconds = run_suite(data_file)
        modules, parts = figures(data_file)
    print(table(modules, parts, seconds))
    short = [p.name for p in parts if p.percent < MINIMUM]
    if short:
        print(f"under {MINIMUM:.0f}%: {', '.join(short)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The in-process suite alone runs at least 90% of each part of the core."""

from __future__ import annotations

from pathlib import Path

from tests.core.measure import MINIMUM, figures, run_suite, table


def test_the_core_suite_covers_each_part_of_the_core_in_process(tmp_path: Path) -> None:
    data_file = tmp_path / ".coverage"
    seconds = run_suite(data_file)
    modules, parts = figures(data_file)
    print(table(modules, parts, seconds))
    assert {p.name for p in parts} == {"publisher", "incidents", "steps", "gate"}
    assert all(p.statements > 0 for p in parts)
    short = {p.name: round(p.percent, 1) for p in parts if p.percent < MINIMUM}
    assert short == {}, f"parts of the core under {MINIMUM}% line coverage: {short}"

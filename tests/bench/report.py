"""The markdown table of scripts/bench: every figure by name, each row set against a raw figure of the same run."""

from __future__ import annotations

import statistics
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

MIB = 2**20
RESULTS = Path(__file__).resolve().parent / "results"


@dataclass(frozen=True)
class Goal:
    """What issue 22 asks of a row: its text, and the test of the row's median against its reference's median."""

    text: str
    met: Callable[[float, float], bool]


def ratio_at_most(limit: float, text: str = "") -> Goal:
    return Goal(text or f"≤ {limit:.2f}", lambda ours, reference: ours <= limit * reference)


def seconds_over_at_most(limit: float) -> Goal:
    return Goal(f"≤ raw + {limit:.1f} s", lambda ours, reference: ours - reference <= limit)


@dataclass(frozen=True)
class Row:
    """One line of the table: the figure `key`, measured by `lane` (whose failure or skip the row reports)."""

    label: str
    key: str
    lane: str
    reference: str | None = None  # the key of the raw figure this row is divided by; None: the row is one
    goal: Goal | None = None
    unit: str = "s"  # "s" or "MiB" (the figure is kept in bytes)


class Figures:
    """Values per key (one per round), CPU-seconds per process name beside each, and why a lane stopped."""

    def __init__(self) -> None:
        self.values: dict[str, list[float]] = defaultdict(list)
        self.cpu: dict[str, list[dict[str, float]]] = defaultdict(list)
        self.problems: dict[str, str] = {}  # lane -> why it was skipped or stopped

    def add(self, key: str, value: float, cpu: dict[str, float] | None = None) -> None:
        self.values[key].append(value)
        if cpu is not None:
            self.cpu[key].append(cpu)

    def has(self, key: str) -> bool:
        return bool(self.values.get(key))

    def median(self, key: str) -> float:
        return statistics.median(self.values[key])

    def minimum(self, key: str) -> float:
        return min(self.values[key])

    def cpu_line(self, key: str, top: int = 6) -> str:
        """Median CPU-seconds per process name over the rounds, largest first; OTHER is what else ran."""
        samples = self.cpu.get(key, [])
        names = {name for sample in samples for name in sample}
        medians = {name: statistics.median(sample.get(name, 0.0) for sample in samples) for name in names}
        shown = sorted(((n, s) for n, s in medians.items() if s >= 0.05), key=lambda kv: -kv[1])[:top]
        return ", ".join(f"{name} {seconds:.1f}" for name, seconds in shown)


HEADINGS = ("measurement", "median", "min", "n", "ratio (median)", "ratio (min)", "Δ median", "goal", "verdict",
            "CPU-s by process (median)")


def table(rows: list[Row], figures: Figures) -> str:
    """The markdown table, one line per row; a row without figures says why."""
    lines = [_line(HEADINGS), _line(["---"] * len(HEADINGS))]
    lines += [_line(_cells(row, figures)) for row in rows]
    return "\n".join(lines)


def _line(cells) -> str:
    return "| " + " | ".join(str(cell).replace("|", "\\|") for cell in cells) + " |"


def _cells(row: Row, figures: Figures) -> list[str]:
    goal = row.goal.text if row.goal else ""
    problem = figures.problems.get(row.lane, "")
    if not figures.has(row.key):
        return [row.label, "—", "—", "0", "", "", "", goal, problem or "not measured", ""]
    median, low = figures.median(row.key), figures.minimum(row.key)
    cells = [row.label, _value(median, row.unit), _value(low, row.unit), str(len(figures.values[row.key]))]
    if row.reference is None:
        cells += ["ref", "ref", "", goal, "reference"]
    elif not figures.has(row.reference):
        cells += ["", "", "", goal, "no reference figure"]
    else:
        cells += _against(row, figures, median, low)
    if problem:  # the lane stopped in a later round: its figures are from fewer rounds
        cells[-1] += f" (then failed: {problem})"
    return [*cells, figures.cpu_line(row.key)]


def _against(row: Row, figures: Figures, median: float, low: float) -> list[str]:
    """Ratios, difference, goal and verdict of a row that has a reference figure."""
    ref_median, ref_low = figures.median(row.reference), figures.minimum(row.reference)
    delta = median - ref_median
    verdict = "" if row.goal is None else "ok" if row.goal.met(median, ref_median) else "MISSED"
    difference = f"{'+' if delta >= 0 else '-'}{_value(abs(delta), row.unit)}"
    return [_ratio(median, ref_median), _ratio(low, ref_low), difference, row.goal.text if row.goal else "", verdict]


def _value(value: float, unit: str) -> str:
    return f"{value / MIB:.2f} MiB" if unit == "MiB" else f"{value:.2f} s"


def _ratio(ours: float, reference: float) -> str:
    return f"{ours / reference:.3f}" if reference > 0 else "—"


def save(text: str, date: str, suffix: str = "") -> Path:
    """Write text to results/<date><suffix>.md, or -2, -3, ... after it when that file exists already."""
    RESULTS.mkdir(exist_ok=True)
    path, n = RESULTS / f"{date}{suffix}.md", 1
    while path.exists():
        n += 1
        path = RESULTS / f"{date}{suffix}-{n}.md"
    path.write_text(text)
    return path

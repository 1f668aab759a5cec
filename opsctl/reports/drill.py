"""Disaster-recovery drill reports: how long a full restore took (RTO) and how much data it would lose (RPO).

Sealed, written and checked like verification reports (see `sealed`). The page charts past drills
as inline SVG, so it stays one self-contained file that renders the same bytes on every machine.
"""

from __future__ import annotations

from html import escape
from pathlib import Path
from typing import TYPE_CHECKING, Any

from opsctl.policy.durations import human_duration
from opsctl.reports import sealed
from opsctl.reports.records import DrillReport
from opsctl.reports.sealed import FAILED, PASSED  # noqa: F401

if TYPE_CHECKING:
    from opsctl.reports.signing import Signer

FORMAT = "opsctl-drill/1"
# The template renders every one of these; checking them in build() fails at the action, not at write().
_KEYS = ("verdict", "summary", "policy", "target", "location", "offsite", "started_at", "restic_version",
         "objectives", "measured", "met", "phases", "databases", "advice", "trend")
_ADDED = ("format", "finished_at", "host", "user", "opsctl_version", "sha256", "signature")
_NICE_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 10800, 21600, 43200, 86400,
               172800, 604800)
_W, _H, _LEFT, _RIGHT, _TOP, _BOTTOM = 420, 150, 48, 80, 10, 22
_GREEN, _RED = "#1e7b34", "#b3261e"


def build(content: dict[str, Any], signer: Signer | None = None) -> DrillReport:
    """The sealed report: the action's content plus when, where, by whom and with which opsctl it was made,
    signed when there is a signer."""
    missing, clash = [k for k in _KEYS if k not in content], [k for k in _ADDED if k in content]
    if missing or clash:
        raise ValueError(f"drill report content: missing keys {missing}, keys opsctl sets itself {clash}")
    return DrillReport.of(sealed.sign(sealed.seal(sealed.stamp({**content, "format": FORMAT})), signer))


def write(report: DrillReport, folder: Path, group: str | None = None) -> tuple[Path, Path]:
    """`drill-<stamp>-<policy>-<sha8>.json` and `.html` in `folder`, readable by `group` too; returns (json, html)."""
    return sealed.write_pair(report.to_json(), folder, "drill", report.policy, render_html, group=group)


def render_html(report: dict[str, Any]) -> str:
    """The HTML page for a drill report; the same report always gives the same bytes."""
    objectives = report["objectives"]
    charts = {name: trend_svg(report["trend"], f"{name}_s", objectives[f"{name}_s"]) for name in ("rto", "rpo")}
    return sealed.template("drill.html.j2").render(r=report, charts=charts, duration=human_duration,
                                                   signature=sealed.signature_label(report),
                                                   embedded=sealed.embed(report))


def trend_svg(points: list[dict[str, Any]], key: str, objective_s: float) -> str:
    """A small line chart of `key` over past drills against the dashed objective; null values are skipped."""
    measured = [(i, p[key]) for i, p in enumerate(points) if p.get(key) is not None]
    peak = max((v for _, v in measured), default=0.0)
    # Seconds against an objective of hours would all sit on the axis: then the chart shows the
    # values, and the objective is named above it instead of drawn.
    top = (peak * 1.3) if 0 < peak * 3 < objective_s else max(objective_s, peak) * 1.15
    right, bottom = _W - _RIGHT, _H - _BOTTOM

    def x(i: int) -> str:  # one slot per drill, so a failed drill leaves a gap in time, not a kink
        return _f(_LEFT + (right - _LEFT) * (i / (len(points) - 1) if len(points) > 1 else 0.5))

    def y(value: float) -> str:
        return _f(bottom - (bottom - _TOP) * value / top)

    label = {"rto_s": "RTO", "rpo_s": "RPO"}.get(key, key)
    parts = [(f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" height="{_H}" '
              f'font-family="sans-serif" font-size="10" role="img" aria-label="{escape(label)} of past drills">'),
             f'<line x1="{_LEFT}" y1="{bottom}" x2="{right}" y2="{bottom}" stroke="#888"/>']
    parts += [f'<text x="{_LEFT - 4}" y="{y(tick)}" dy="3" text-anchor="end">'
              f'{human_duration(tick) if tick else "0"}</text>' for tick in _ticks(top)]
    goal = human_duration(objective_s)
    if objective_s <= top:
        parts.append(f'<line class="objective" x1="{_LEFT}" y1="{y(objective_s)}" x2="{right}" y2="{y(objective_s)}" '
                     f'stroke="#555" stroke-dasharray="5 3"/>'
                     f'<text x="{right + 4}" y="{y(objective_s)}" dy="3">objective {goal}</text>')
    else:
        parts.append(f'<text class="objective" x="{right + 4}" y="{_TOP}" dy="3">objective {goal}'
                     '</text><text x="{0}" y="{1}" dy="3">(far above)</text>'.format(right + 4, _TOP + 12))
    if not measured:
        parts.append(f'<text x="{x(0)}" y="{y(objective_s / 2)}" text-anchor="middle">not measured yet</text>')
    if len(measured) > 1:
        line = " ".join(f"{x(i)},{y(v)}" for i, v in measured)
        parts.append(f'<polyline points="{line}" fill="none" stroke="#336" stroke-width="1.5"/>')
    for i, value in measured:
        last = i == len(points) - 1  # this drill: larger and ringed
        ring = ' r="5" stroke="#000" stroke-width="1.5"' if last else ' r="3"'
        parts.append(f'<circle class="point" cx="{x(i)}" cy="{y(value)}"{ring} '
                     f'fill="{_GREEN if value <= objective_s else _RED}">'
                     f'<title>{escape(str(points[i].get("date", ""))[:10])}: {human_duration(value)}</title></circle>')
    for i in sorted({0, len(points) - 1}) if points else ():
        anchor = "middle" if len(points) == 1 else ("start" if i == 0 else "end")
        parts.append(f'<text x="{x(i)}" y="{bottom + 14}" text-anchor="{anchor}">'
                     f'{escape(str(points[i].get("date", ""))[:10])}</text>')
    return "".join(parts) + "</svg>"


def _ticks(top: float) -> list[float]:
    """Two or three round durations from 0 up to `top` for the y axis."""
    step = next((s for s in _NICE_STEPS if s >= top / 3), top / 3)
    return [step * k for k in range(3) if step * k <= top]


def _f(number: float) -> str:
    return f"{number:.1f}"

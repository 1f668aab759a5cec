"""The normalized form: calendar_spec_to_string().

The text systemd-analyze prints as "Normalized form:", so that opsctl and systemd can be compared line for line,
and the form suggestions for refused text are written in.
"""

from __future__ import annotations

from opsctl.policy.calendar.spec import USEC, WEEKDAYS, Chain, Part, Spec


def normal_form(spec: Spec) -> str:
    text = f"{_format_weekdays(spec.weekdays)} " if spec.weekdays else ""
    text += f"{_format_chain(spec.year, 4)}-{_format_chain(spec.month, 2)}-{_format_chain(spec.day, 2)} "
    return text + f"{_format_chain(spec.hour, 2)}:{_format_chain(spec.minute, 2)}:{_format_seconds(spec.usec)}"


def _format_weekdays(bits: int) -> str:
    """Runs of three or more days as Mon..Wed, shorter runs as Mon,Tue, as systemd writes them."""
    runs: list[str] = []
    day = 0
    while day < len(WEEKDAYS):
        if not bits & (1 << day):
            day += 1
            continue
        end = day
        while end + 1 < len(WEEKDAYS) and bits & (1 << (end + 1)):
            end += 1
        runs.append(WEEKDAYS[day] if end == day else
                    f"{WEEKDAYS[day]}{'..' if end > day + 1 else ','}{WEEKDAYS[end]}")
        day = end + 1
    return ",".join(runs)


def _format_chain(chain: Chain, width: int, scale: int = 1) -> str:
    if chain is None:
        return "*"
    texts = []
    for part in chain:
        text = f"{part.start // scale:0{width}d}"
        if part.stop > 0:
            text += f"..{part.stop // scale:0{width}d}"
        if part.repeat > 0 and not (part.stop > 0 and part.repeat == scale):
            text += f"/{part.repeat // scale}"
        texts.append(text)
    return ",".join(texts)


def _format_seconds(chain: Chain) -> str:
    # Any element meaning "every second" makes systemd print the whole list as "*".
    if chain is None or Part(0, -1, USEC) in chain:
        return "*"
    return _format_chain(chain, 2, USEC)

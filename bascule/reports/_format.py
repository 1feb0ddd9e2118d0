"""How the human-facing reports write the values of a `bascule.result/1` document: a figure that is
null or not finite reads as a dash (never 0), and ratios, durations, counts, money and incident
clock times are formatted alike by the Markdown summary, the HTML report and the charts."""

from __future__ import annotations

import math
import re
from datetime import UTC, datetime, timedelta

from bascule.model.durations import format_duration

__all__ = [
    "DASH",
    "as_float",
    "as_str",
    "fmt_clock_span",
    "fmt_count",
    "fmt_instant",
    "fmt_money",
    "fmt_number",
    "fmt_percent",
    "fmt_seconds",
    "fmt_span",
    "fmt_value",
    "md_text",
]

DASH = "—"
_MD_SPECIAL = re.compile(r"([\\`*_\[\]|~])")


def md_text(value: object) -> str:
    """Plain text for Markdown (and table cells): HTML and Markdown syntax neutralised, one line."""
    text = " ".join(as_str(value).split())
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    return _MD_SPECIAL.sub(r"\\\1", text)


def as_float(value: object) -> float | None:
    # bool is an int in Python but never a measurement in the document.
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def as_str(value: object) -> str:
    return "" if value is None else str(value)


def _trim(text: str) -> str:
    return text.rstrip("0").rstrip(".") if "." in text else text


def fmt_number(value: object, digits: int = 2) -> str:
    number = as_float(value)
    if number is None:
        return DASH
    if number == round(number) and abs(number) < 1e15:
        return f"{round(number):,}"
    return _trim(f"{number:,.{digits}f}")


def fmt_percent(value: object, digits: int = 2) -> str:
    """0.9934 → "99.34 %"; a ratio just short of 1 never reads as 100 %, nor a tiny one as 0 %."""
    ratio = as_float(value)
    if ratio is None:
        return DASH
    pct = ratio * 100
    text = _trim(f"{pct:.{digits}f}")
    scale = 10**digits
    if text == "100" and ratio < 1:
        text = f"{math.floor(pct * scale) / scale:.{digits}f}"
    elif text in ("0", "-0") and ratio > 0:
        text = f"<{1 / scale:.{digits}f}"
    return f"{text} %"


def fmt_seconds(value: object) -> str:
    """A duration for people: "380 ms", "6.8 s", "2 min 05 s", "14 h 32 min"."""
    seconds = as_float(value)
    if seconds is None:
        return DASH
    sign = "-" if seconds < 0 else ""
    s = abs(seconds)
    if s == 0:
        return "0 s"
    if s < 1:
        ms = s * 1000
        return f"{sign}{ms:.0f} ms" if ms >= 10 else f"{sign}{_trim(f'{ms:.1f}')} ms"
    if s < 100:
        return f"{sign}{_trim(f'{s:.2f}')} s"
    if s < 3600:
        minutes, rest = divmod(round(s), 60)
        return f"{sign}{minutes} min {rest:02d} s"
    hours, rest = divmod(round(s / 60), 60)
    return f"{sign}{hours} h {rest:02d} min"


def fmt_instant(value: object) -> str:
    """A plan-relative instant, to the hundredth: "12.30 s", "-5.00 s"."""
    t = as_float(value)
    return DASH if t is None else f"{t:.2f} s"


def fmt_span(start: object, end: object) -> str:
    a, b = as_float(start), as_float(end)
    if a is None and b is None:
        return DASH
    left = DASH if a is None else f"{a:.2f}"
    right = DASH if b is None else f"{b:.2f}"
    return f"{left} → {right} s"


def fmt_count(value: object) -> str:
    number = as_float(value)
    return DASH if number is None else f"{round(number):,}"


def fmt_money(value: object, currency: str) -> str:
    amount = as_float(value)
    if amount is None:
        return DASH
    if amount == 0 or abs(amount) >= 0.1:
        text = f"{amount:,.2f}"
    else:
        # Two significant digits for the small sums a one-minute failover costs.
        digits = -math.floor(math.log10(abs(amount))) + 1
        text = f"{amount:.{digits}f}"
    return f"{text} {currency}".strip()


def fmt_value(value: object, unit: str) -> str:
    if unit == "ratio":
        return fmt_percent(value)
    if unit == "s":
        return fmt_seconds(value)
    if unit == "count":
        return fmt_count(value)
    return fmt_number(value)


def _parse_instant(text: str) -> datetime | None:
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        return None
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _clock(origin: datetime, offset: float) -> str:
    moment = origin + timedelta(seconds=round(offset / 60) * 60)
    days = (moment.date() - origin.date()).days
    return moment.strftime("%H:%M") + (f" (+{days} d)" if days else "")


def _offset(offset: float, *, seconds: bool = False) -> str:
    if seconds:
        # A scenario of seconds (a fault scenario, your own game day): minutes would all read +0:00.
        return f"{'-' if offset < 0 else '+'}{format_duration(abs(offset))}"
    minutes = round(offset / 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{sign}{hours}:{rest:02d}"


def fmt_clock_span(real_start: object, real_end: object, started_at: object) -> str:
    """An incident phase in the incident's own time: "06:48 → 09:25" UTC when the scenario says when
    the incident started, else offsets from its start ("+0:00 → +2:37", or "+3s → +13s" for a
    phase shorter than a few minutes)."""
    a, b = as_float(real_start), as_float(real_end)
    if a is None and b is None:
        return DASH
    origin = _parse_instant(started_at) if isinstance(started_at, str) else None
    short = max(abs(x) for x in (a, b) if x is not None) < 600

    def one(x: float | None) -> str:
        if x is None:
            return DASH
        return _clock(origin, x) if origin is not None else _offset(x, seconds=short)

    return f"{one(a)} → {one(b)}"

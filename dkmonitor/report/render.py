"""Turn the report's data into pages: an index and one page per host and target.

Pages come from Jinja2 templates (``templates/*.html.j2``) with autoescaping
on for everything: user names, task names and paths are whatever people
made them, ``<script>`` included. The charts are the only markup not
escaped, and they are matplotlib's own SVG with every string drawn as
paths (see charts.py). The pages load nothing: no scripts at all, the style
sheet inline, the charts inline.

Files are written whole or not at all: each into a temporary file in the
output directory (created exclusively, never through an existing name) and
then renamed over the old page, so a reader never sees half a page and a
symlink planted in the directory is replaced, not followed.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jinja2 import Environment, PackageLoader, StrictUndefined
from markupsafe import Markup

from dkmonitor import __version__
from dkmonitor.report import charts
from dkmonitor.report.data import PlaceData, ReportData
from dkmonitor.report.forecast import Forecast, forecast
from dkmonitor.units import human_bytes, human_count

TOP = 10  # users in the "top" charts and tables


@dataclass(frozen=True)
class Written:
    index: Path
    pages: int


def page_name(place: PlaceData) -> str:
    """A safe, stable file name for a place: readable part plus a hash of the real one."""
    readable = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{place.hostname}_{place.target_path}")
    digest = hashlib.sha256(f"{place.hostname}\0{place.target_path}".encode()).hexdigest()[:10]
    return f"{readable.strip('_.')[:60]}-{digest}.html"


def _environment() -> Environment:
    environment = Environment(
        loader=PackageLoader("dkmonitor.report", "templates"),
        autoescape=True,
        undefined=StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        finalize=visible,
    )
    environment.filters["bytes"] = human_bytes
    environment.filters["count"] = human_count
    environment.filters["when"] = _when
    environment.filters["pct"] = _pct
    return environment


def visible(value: object) -> object:
    """Text as a page shows it: control characters and lone surrogates spelt out.

    Applied to every ``{{ }}`` before escaping: a user name holding an
    escape sequence or an undecodable byte shows as ``\x1b[31m`` or
    ``\udcff`` instead of an invisible (or unwritable) character. Markup
    (the charts) is left alone.
    """
    if not isinstance(value, str) or isinstance(value, Markup):
        return value
    if value.isprintable():
        return value
    return "".join(
        ch if ch.isprintable() else ch.encode("unicode_escape", "backslashreplace").decode("ascii")
        for ch in value
    )


def _when(moment: datetime | None) -> str:
    return "-" if moment is None else moment.strftime("%Y-%m-%d %H:%M UTC")


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f} %"


def _forecast(place: PlaceData, window: timedelta) -> Forecast:
    thresholds = [place.critical] if place.critical is not None else []
    if 100.0 not in thresholds:
        thresholds.append(100.0)
    return forecast(place.times, place.percents, thresholds, window)


def _crossing_text(fit: Forecast, threshold: float | None) -> str:
    for crossing in fit.crossings:
        if threshold is not None and crossing.threshold == threshold:
            return crossing.describe()
    return "-"


def _place_context(place: PlaceData, fit: Forecast) -> dict[str, Any]:
    """Everything one place's page shows, charts included."""
    top = place.users[:TOP]
    growth = []
    for change in place.growth:
        growers = [c for c in change.changes if c[2] > 0][:TOP]
        growth.append({"days": change.days, "since": change.since, "rows": growers})
    week = next((g for g in place.growth if g.days == 7), None)
    week_rows = [c for c in week.changes if c[2] > 0][:TOP] if week is not None else []
    histograms = [
        {
            "title": histogram.title,
            "buckets": histogram.buckets,
            "svg": charts.histogram_chart(
                [b.label for b in histogram.buckets], [b.bytes for b in histogram.buckets], "bytes"
            )
            if any(b.bytes for b in histogram.buckets)
            else None,  # no bytes at all (an empty target): a table of zeros, no empty chart
        }
        for histogram in place.histograms or []
    ]
    return {
        "place": place,
        "fit": fit,
        "critical_date": _crossing_text(fit, place.critical),
        "full_date": _crossing_text(fit, 100.0),
        "last_percent": place.percents[-1] if place.percents else None,
        "last_reading": place.times[-1] if place.times else None,
        "disk_svg": charts.disk_use_chart(
            place.times, place.percents, fit, place.warning, place.critical
        )
        if place.times
        else None,
        "top_svg": charts.bar_chart(
            [u.username for u in top], [u.bytes for u in top], "bytes (apparent size)"
        )
        if top
        else None,
        "growth": growth,
        "growth_svg": charts.bar_chart(
            [row[0] for row in week_rows], [row[2] for row in week_rows], "growth in 7 days"
        )
        if week_rows
        else None,
        "histograms": histograms,
        "share": _shares(place),
    }


def _shares(place: PlaceData) -> dict[str, str]:
    """Each user's share of the file system: allocated bytes over its size."""
    if not place.disk_total:
        return {}
    return {
        u.username: f"{100.0 * u.allocated_bytes / place.disk_total:.2f} %" for u in place.users
    }


def write_report(
    data: ReportData, output: Path, window_days: int = 30, now: datetime | None = None
) -> Written:
    """Write index.html and one page per place into ``output`` (created when missing)."""
    output.mkdir(parents=True, exist_ok=True)
    environment = _environment()
    window = timedelta(days=window_days)
    generated = now or datetime.now(UTC).replace(tzinfo=None)
    common = {"generated": generated, "version": __version__, "window_days": window_days}
    page = environment.get_template("place.html.j2")
    rows = []
    for place in data.places:
        fit = _forecast(place, window)
        name = page_name(place)
        context = _place_context(place, fit)
        _write(output / name, page.render(**common, **context))
        rows.append({**context, "href": name})
    index = environment.get_template("index.html.j2").render(**common, rows=rows, since=data.since)
    _write(output / "index.html", index)
    return Written(output / "index.html", len(rows))


def _write(path: Path, text: str) -> None:
    """Replace ``path`` with ``text`` atomically (temporary file in the same directory)."""
    fd, temp = tempfile.mkstemp(dir=path.parent, prefix=".dkm-report-", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.chmod(temp, 0o644)
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise

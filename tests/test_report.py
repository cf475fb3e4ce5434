"""`dkmonitor report --output DIR`, run as the real command on both databases.

Two kinds of history: real scans of a real tree (`run path` in a
subprocess), and a synthetic history stored through the models, whose
disk use grows on a straight line so the forecast dates are known in
advance, and whose user names and paths are hostile (`<script>`, quotes,
escape sequences) to prove the pages escape them.
"""

from __future__ import annotations

import html
import re
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from dkmonitor.db.engine import open_database
from dkmonitor.db.models import Scan, Task, UserStat
from tests.fixtures.tree import NOBODY, UNKNOWN_UID

START = datetime(2025, 1, 1, 12, 0)  # noon: the forecast dates are far from midnight
DAYS = 40
GIB = 1 << 30
HOST, TARGET = "alpha", "/scratch"
HOSTILE_PATH = "/data/<img src=x onerror=alert(1)>"
SCRIPT = "<script>alert(1)</script>"
USERS = {  # name -> (bytes on day 0, growth per day)
    "ann": (10 * GIB, GIB),
    SCRIPT: (GIB, 2 << 20),
    'bob & "co"': (50 * GIB, 0),
    "\x1b[31mred": (3 * GIB, 0),
    "ünïcødé": (2 * GIB, 100 << 20),
}
# Disk use: 40 % on day 0, half a point a day: critical 90 % on day 100, 100 % on day 120.
CRITICAL_DATE = (START + timedelta(days=100)).strftime("%Y-%m-%d")
FULL_DATE = (START + timedelta(days=120)).strftime("%Y-%m-%d")


def percent_at(when: datetime) -> float:
    return 40.0 + 0.5 * (when - START).total_seconds() / 86400


def _scan(run_id: str, host: str, path: str, task: str, kind: str, when: datetime) -> Scan:
    return Scan(
        run_id=run_id,
        task_name=task,
        hostname=host,
        target_path=path,
        kind=kind,
        status="ok",
        started_at=when,
        finished_at=when + timedelta(minutes=3),
        disk_total=1000 * GIB,
        disk_used=int(10 * GIB * percent_at(when)),
        disk_available=int(1000 * GIB - 10 * GIB * percent_at(when)),
        disk_use_percent=percent_at(when),
        errors=0,
    )


def store_history(url: str) -> None:
    """DAYS days: a quick reading every 6 hours and a nightly full scan with user rows."""
    db = open_database(url)
    try:
        with Session(db.engine) as session, session.begin():
            session.add(
                Task(
                    name="scratch",
                    hostname=HOST,
                    target_path=TARGET,
                    usage_warning_threshold=80.0,
                    usage_critical_threshold=90.0,
                    old_file_threshold=30.0,
                )
            )
            for day in range(DAYS + 1):
                for hour in (0, 6, 18):
                    when = START + timedelta(days=day, hours=hour)
                    if day < DAYS or hour == 0:
                        session.add(_scan(f"q{day}-{hour}", HOST, TARGET, "scratch", "quick", when))
                if day == DAYS:
                    break
                full = _scan(f"f{day}", HOST, TARGET, "scratch", "full", START + timedelta(day))
                for uid, (name, (size, per_day)) in enumerate(USERS.items(), start=2000):
                    grown = size + per_day * day
                    full.users.append(
                        UserStat(
                            uid=uid,
                            username=name,
                            files=grown // GIB + 1,
                            bytes=grown,
                            allocated_bytes=grown,
                            old_files=1,
                            old_bytes=grown // 2,
                            average_age_days=42.0,
                        )
                    )
                session.add(full)
            # A second place, no task, a hostile path, flat use: "no growth".
            for day in range(5):
                when = START + timedelta(days=35 + day)
                scan = _scan(f"h{day}", "beta", HOSTILE_PATH, "path:hostile", "full", when)
                scan.disk_use_percent = 12.0
                session.add(scan)
    finally:
        db.dispose()


def read_pages(out: Path) -> tuple[str, dict[str, str]]:
    index = (out / "index.html").read_text(encoding="utf-8")
    hrefs = re.findall(r'<a href="([^"]+\.html)">', index)
    pages = {href: (out / href).read_text(encoding="utf-8") for href in dict.fromkeys(hrefs)}
    return index, pages


def section(page: str, heading: str) -> str:
    """The HTML from ``heading`` up to the next heading of any level."""
    start = page.index(heading)
    end = re.compile(r"<h[123]>").search(page, start + len(heading))
    return page[start : end.start() if end else len(page)]


def test_report_of_synthetic_history(dkm, db_url, tmp_path):
    store_history(db_url)
    out = tmp_path / "report"
    result = dkm("report", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "" and result.stderr == ""  # as cron runs it: nothing to say
    index, pages = read_pages(out)
    assert len(pages) == 2
    alpha = next(p for p in pages.values() if f"{HOST}: <span" in p)
    hostile = next(p for p in pages.values() if p is not alpha)

    # The forecast: the known dates, and the window stated.
    assert f"<td>{CRITICAL_DATE}</td>" in alpha and f"<td>{FULL_DATE}</td>" in alpha
    assert CRITICAL_DATE in index and FULL_DATE in index
    assert "last 30 days of history" in alpha and "+0.500 percentage points per day" in alpha
    assert "<td>no growth</td>" in hostile  # flat at 12 %
    assert "thresholds are unknown" in hostile

    # Top growers: ann grew 1 GiB a day, so 7.00 GiB in 7 days, first in the table.
    week = section(alpha, "<h3>Over 7 days</h3>")
    assert re.search(r"<td>ann</td><td class=\"num\">[^<]+</td><td class=\"num\">\+7.00 GiB", week)
    day = section(alpha, "<h3>Over 1 day</h3>")
    assert day.index("ann") < day.index("ünïcødé") < day.index("&lt;script&gt;")
    assert "bob" not in day  # no growth, not a grower
    # Every user listed, largest first, with the share of the file system.
    users = section(alpha, "<h2>Every user</h2>")
    assert users.index("bob &amp; &#34;co&#34;") < users.index("<td>ann</td>")
    assert "5.00 %" in users  # bob: 50 GiB of 1000 GiB

    # Optional parts this schema does not record yet.
    assert "Not recorded yet" in alpha and "not recorded yet" in alpha

    # Hostile names and paths are escaped, never markup.
    for text in (index, *pages.values()):
        assert "<script" not in text and "<img" not in text and "\x1b" not in text
        assert "onerror=alert(1)>" not in text
    assert html.escape(SCRIPT, quote=True).replace("&#x27;", "&#39;") in alpha
    assert "&lt;img src=x onerror=alert(1)&gt;" in hostile and "&lt;img" in index
    assert "<td>\\x1b[31mred</td>" in alpha  # the escape character spelt out
    # Charts are inline SVG with drawn paths, and no text of their own to escape.
    assert alpha.count("<svg") == 3  # disk use, top users, growth over 7 days
    assert "<!--" not in alpha and "<text" not in alpha


def test_report_of_real_scans(dkm, tmp_path, scan_target, requires_root):
    scan_target.file("a/big", uid=NOBODY, size=5 << 20, written=True)
    scan_target.file("a/old", uid=UNKNOWN_UID, size=1 << 20, written=True, atime_days=400)
    scan_target.file("b/small", uid=NOBODY, size=4096, written=True)
    for _ in range(2):
        done = dkm("run", "path", str(scan_target.root), "--old-days", "90")
        assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    result = dkm("report", "--output", str(out))
    assert result.returncode == 0, result.stderr
    index, pages = read_pages(out)
    (page,) = pages.values()
    assert str(scan_target.root) in index and str(scan_target.root) in page
    users = section(page, "<h2>Every user</h2>")
    assert users.index("<td>nobody</td>") < users.index(f"<td>{UNKNOWN_UID}</td>")
    assert "5.00 MiB" in users  # nobody's 5 MiB + 4 KiB, three significant digits
    assert "<td>not enough history</td>" in page  # two readings a moment apart
    assert "<svg" in page


def test_empty_database_writes_an_index_that_says_so(dkm_sqlite, tmp_path):
    out = tmp_path / "new" / "dir"
    result = dkm_sqlite("report", "--output", str(out))
    assert result.returncode == 0, result.stderr
    assert "No scans stored yet" in (out / "index.html").read_text()


def test_output_that_is_a_file_is_refused_in_one_line(dkm_sqlite, tmp_path):
    target = tmp_path / "file"
    target.write_text("keep me")
    result = dkm_sqlite("report", "--output", str(target))
    assert result.returncode == 2
    assert len(result.stderr.strip().splitlines()) == 1 and str(target) in result.stderr
    assert target.read_text() == "keep me"


def test_a_symlink_in_the_output_directory_is_replaced_not_followed(dkm_sqlite, tmp_path):
    victim = tmp_path / "victim"
    victim.write_text("precious")
    out = tmp_path / "out"
    out.mkdir()
    (out / "index.html").symlink_to(victim)
    assert dkm_sqlite("report", "--output", str(out)).returncode == 0
    assert victim.read_text() == "precious"
    assert not (out / "index.html").is_symlink()
    assert [p.name for p in out.iterdir() if p.name.startswith(".")] == []  # no temp files left


def test_without_the_extra_it_says_how_to_install_it(dkm_sqlite, tmp_path):
    # A matplotlib that cannot be imported, first on the path: as if it were not installed.
    fake = tmp_path / "fake"
    fake.mkdir()
    (fake / "matplotlib.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'matplotlib'\", name='matplotlib')\n"
    )
    result = dkm_sqlite("report", "--output", str(tmp_path / "out"), env={"PYTHONPATH": str(fake)})
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr
    assert "pip install 'dkmonitor[report]'" in result.stderr
    assert not (tmp_path / "out").exists()


def test_other_commands_do_not_import_the_report_libraries(dkm_sqlite):
    code = (
        "import sys; from dkmonitor.cli import main\n"
        "try:\n    main(sys.argv[1:])\nexcept SystemExit:\n    pass\n"
        "bad = [m for m in ('matplotlib', 'jinja2') if m in sys.modules]\n"
        "print('imported:', bad)\n"
    )
    args = ["--config", str(dkm_sqlite.config), "view", "systems"]
    done = subprocess.run(
        [sys.executable, "-c", code, *args],
        capture_output=True,
        text=True,
        check=False,
    )
    assert "imported: []" in done.stdout, done.stdout + done.stderr


def test_cron_offers_a_nightly_report_line(dkm_sqlite, tmp_path):
    out = tmp_path / "www" / "dkm report"
    plain = dkm_sqlite("cron").stdout.splitlines()
    result = dkm_sqlite("cron", "--report", str(out))
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[:2] == plain and len(lines) == 3
    assert lines[2].endswith(f"report --output '{out}'")
    crontab = tmp_path / "crontab"
    first = dkm_sqlite("cron", "--install", "--report", str(out), "--crontab-file", str(crontab))
    assert first.returncode == 0 and first.stdout.count("added to") == 3, first.stderr
    again = dkm_sqlite("cron", "--install", "--report", str(out), "--crontab-file", str(crontab))
    assert again.stdout.count("already in") == 3
    assert crontab.read_text().splitlines() == lines

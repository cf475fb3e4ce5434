"""`dkmonitor report --output DIR`, run as the real command on both databases.

Two kinds of history: real scans of a real tree (`run path` in a
subprocess), and a synthetic history stored through the models, whose
disk use grows on a straight line so the forecast dates are known in
advance, and whose user names and paths are hostile (`<script>`, quotes,
escape sequences) to prove the pages escape them.
"""

from __future__ import annotations

import html
import os
import re
import stat
import subprocess
import sys
from datetime import datetime, timedelta
from pathlib import Path

from sqlalchemy.orm import Session

from dkmonitor.db.engine import open_database
from dkmonitor.db.models import Scan, Task, UserStat
from dkmonitor.report.data import (
    Bucket,
    Growth,
    Histogram,
    PlaceData,
    ReportData,
    TopDirectory,
    UserRow,
)
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
    "用户": (GIB // 2, 0),  # a script the charts' font lacks: boxes there, no warning
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
    """The HTML from ``heading`` (``<h2>..``, ``<h3>..``) to the next heading as high."""
    start = page.index(heading)
    level = int(heading[2])
    pattern = re.compile("|".join(f"<h{n}>" for n in range(1, level + 1)))
    end = pattern.search(page, start + len(heading))
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

    # Scans stored without the newer numbers (as before migration 0006: no
    # histogram or directory rows, 0 inodes) say so rather than show zeros.
    assert section(alpha, "<h2>File sizes and ages</h2>").count("Not recorded yet") == 1
    assert section(alpha, "<h2>Top directories</h2>").count("Not recorded yet") == 1
    users_note = "Inodes and directories per user: not recorded yet"
    assert users_note in users and '<th class="num">inodes</th>' not in users

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


def make_real_tree(scan_target) -> None:
    """A small tree whose buckets and directory totals are stated in the tests below.

    a/ (owned by nobody): big, 5 MiB, new; old, 1 MiB, 400 days unused, of an
    unknown uid; link, a symlink owned by nobody. b/ (root's): small, 4 KiB, nobody's.
    """
    scan_target.dir("a", uid=NOBODY)
    scan_target.file("a/big", uid=NOBODY, size=5 << 20, written=True)
    scan_target.file("a/old", uid=UNKNOWN_UID, size=1 << 20, written=True, atime_days=400)
    scan_target.file("b/small", uid=NOBODY, size=4096, written=True)
    link = scan_target.symlink("big", "a/link")
    os.lchown(link, NOBODY, NOBODY)


def owned_entries(root: Path) -> dict[int, tuple[int, int]]:
    """uid -> (inodes, directories) below ``root``, counted here from lstat, once per inode."""
    seen: dict[tuple[int, int], os.stat_result] = {}
    for parent, dirs, files in os.walk(root):
        for name in dirs + files:
            st = os.lstat(os.path.join(parent, name))
            seen[(st.st_dev, st.st_ino)] = st
    counts: dict[int, tuple[int, int]] = {}
    for st in seen.values():
        inodes, directories = counts.get(st.st_uid, (0, 0))
        counts[st.st_uid] = (inodes + 1, directories + stat.S_ISDIR(st.st_mode))
    return counts


def cell(text: str) -> str:
    return f'<td class="num">{text}</td>'


def test_report_of_real_scans(dkm, tmp_path, scan_target, requires_root):
    make_real_tree(scan_target)
    for _ in range(2):
        done = dkm("run", "path", str(scan_target.root), "--old-days", "90")
        assert done.returncode == 0, done.stderr
    out = tmp_path / "out"
    result = dkm("report", "--output", str(out))
    assert result.returncode == 0, result.stderr
    index, pages = read_pages(out)
    (page,) = pages.values()
    root = str(scan_target.root)
    assert root in index and root in page
    assert "not recorded yet" not in page.lower()  # every part recorded by this version's scan
    users = section(page, "<h2>Every user</h2>")
    assert users.index("<td>nobody</td>") < users.index(f"<td>{UNKNOWN_UID}</td>")
    assert "5.00 MiB" in users  # nobody's 5 MiB + 4 KiB, three significant digits
    # Inodes and directories per user, against the tree's own count: nobody owns
    # a/, a/big, a/link, b/small; the unknown uid a/old.
    owned = owned_entries(scan_target.root)
    assert owned[NOBODY] == (4, 1) and owned[UNKNOWN_UID] == (1, 0)
    assert '<th class="num">directories</th><th class="num">inodes</th>' in users
    for name, uid in (("nobody", NOBODY), (str(UNKNOWN_UID), UNKNOWN_UID)):
        row = re.search(f"<tr><td>{name}</td>.*?</tr>", users)
        assert row is not None, name
        inodes, directories = owned[uid]
        files = 2 if uid == NOBODY else 1
        expected = f"{cell(uid)}{cell(files)}{cell(directories)}{cell(inodes)}"
        assert expected in row.group(0), row.group(0)

    # Histograms: buckets as the scanner labels them (scan/stats.py SIZE_LABELS,
    # AGE_LABELS), each bucket [previous edge, its edge): 4096 B is in "<64K",
    # 1 MiB and 5 MiB in "<16M"; 400 days in "<730d", new files in "<7d".
    sizes = section(page, "<h3>File sizes</h3>")
    assert "<td>&lt;4K</td>" + cell(0) + cell("0 B") in sizes
    assert "<td>&lt;64K</td>" + cell(1) + cell("4.00 KiB") in sizes
    assert "<td>&lt;1M</td>" + cell(0) in sizes
    assert "<td>&lt;16M</td>" + cell(2) + cell("6.00 MiB") in sizes
    assert "<td>&gt;=64G</td>" + cell(0) in sizes
    assert sizes.index("&lt;4K") < sizes.index("&lt;64K") < sizes.index("&gt;=64G")
    ages = section(page, "<h3>File ages</h3>")
    assert "<td>&lt;7d</td>" + cell(2) + cell("5.00 MiB") in ages
    assert "<td>&lt;365d</td>" + cell(0) in ages
    assert "<td>&lt;730d</td>" + cell(1) + cell("1.00 MiB") in ages
    assert "<td>&gt;=730d</td>" + cell(0) in ages
    # Top directories: whole subtrees, largest first; only a/ holds old bytes.
    a_row = f'<td class="path">{root}/a</td>' + cell(2) + cell("6.00 MiB") + cell("1.00 MiB")
    b_row = f'<td class="path">{root}/b</td>' + cell(1) + cell("4.00 KiB") + cell("0 B")
    by_size = section(page, "<h3>By size</h3>")
    assert a_row in by_size and b_row in by_size and by_size.index(a_row) < by_size.index(b_row)
    by_old = section(page, "<h3>By old files&#39; size</h3>")
    assert a_row in by_old and f"{root}/b" not in by_old

    assert "<td>not enough history</td>" in page  # two readings a moment apart
    # disk use, top users, the two histograms (no growth: the scans are a moment apart)
    assert page.count("<svg") == 4


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


def optional_report() -> ReportData:
    """A place with every OPTIONAL part recorded, as the later schema will give them."""
    times = [START + timedelta(days=d) for d in range(30)]
    users = [
        UserRow("ann", 2000, 10, 5 * GIB, 5 * GIB, 1, GIB, 12.0, inodes=123_456, directories=789),
        UserRow(SCRIPT, 2001, 1, GIB, GIB, 0, 0, 1.0, inodes=3, directories=2),
    ]
    sizes = ("< 4 KiB", "< 64 KiB", "< 1 MiB", "< 16 MiB", ">= 16 MiB")
    ages = ("< 7 d", "< 30 d", "< 90 d", "< 180 d", "< 365 d", "< 730 d", ">= 730 d")
    return ReportData(
        [
            PlaceData(
                hostname="gamma",
                target_path="/proj",
                task_name="proj",
                warning=70.0,
                critical=85.0,
                times=times,
                percents=[30.0 + d for d in range(30)],
                scan_id=1,
                scanned_at=times[-1],
                disk_total=100 * GIB,
                users=users,
                growth=[Growth(days, None) for days in (1, 7, 30)],
                has_inodes=True,
                histograms=[
                    Histogram(
                        "File sizes", tuple(Bucket(b, 10 * i, i * GIB) for i, b in enumerate(sizes))
                    ),
                    Histogram(
                        "File ages", tuple(Bucket(b, i, i << 20) for i, b in enumerate(ages))
                    ),
                ],
                top_by_bytes=[TopDirectory(f"/proj/{SCRIPT}/data", 5 * GIB, GIB, 12_345)],
                top_by_old_bytes=[TopDirectory('/proj/old & "quoted"', 2 * GIB, 2 * GIB)],
            )
        ],
        None,
    )


def test_optional_parts_render_when_recorded(tmp_path):
    from dkmonitor.report.render import write_report

    written = write_report(optional_report(), tmp_path / "out")
    assert written.pages == 1
    _index, pages = read_pages(tmp_path / "out")
    (page,) = pages.values()
    assert "not recorded yet" not in page.lower()
    assert page.count("<svg") == 4  # disk use, top users, the two histograms
    sizes = section(page, "<h3>File sizes</h3>")
    assert "<td>&lt; 4 KiB</td>" in sizes and "<td>&gt;= 16 MiB</td>" in sizes
    assert "4.00 GiB" in sizes  # the fifth bucket: 4 GiB
    top = section(page, "<h2>Top directories</h2>")
    assert "/proj/&lt;script&gt;alert(1)&lt;/script&gt;/data" in top
    assert "/proj/old &amp; &#34;quoted&#34;" in top
    assert '<td class="num">12,345</td>' in top and '<td class="num">-</td>' in top  # files
    users = section(page, "<h2>Every user</h2>")
    assert '<th class="num">inodes</th>' in users and "123,456" in users and "789" in users
    assert "No full scan about 7 days before the last one" in page
    assert "<script" not in page


def test_bucket_labels_are_the_scanners():
    from dkmonitor.report.data import bucket_label
    from dkmonitor.scan.stats import AGE_EDGES_DAYS, AGE_LABELS, SIZE_EDGES, SIZE_LABELS

    # Stored buckets are named by their lower edge: 0, then each edge in turn.
    assert [bucket_label("size", low) for low in (0, *SIZE_EDGES)] == list(SIZE_LABELS)
    assert [bucket_label("age", low) for low in (0, *AGE_EDGES_DAYS)] == list(AGE_LABELS)
    assert bucket_label("size", 4096) == "<64K" and bucket_label("age", 730) == ">=730d"
    # An edge the scanner no longer has (buckets changed since the scan): spelt out.
    assert bucket_label("size", 5000) == ">=5,000 B" and bucket_label("age", 3) == ">=3d"

"""`dkmonitor cron`: the lines for this host, and an idempotent install."""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from dkmonitor.crontab import cron_lines, merge

OTHER = (
    "# m h dom mon dow command\n"
    "MAILTO=admin@example.edu\n"
    "5 4 * * * /usr/local/bin/backup --all\n"
    "@reboot /usr/bin/true\n"
)


def dkmonitor_lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if "dkmonitor" in line]


def test_prints_quick_hourly_and_full_nightly(dkm_sqlite):
    result = dkm_sqlite("cron")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert len(lines) == 2
    quick, full = (line.split(None, 5) for line in lines)
    assert quick[1:5] == ["*", "*", "*", "*"] and 0 <= int(quick[0]) < 60
    assert full[2:5] == ["*", "*", "*"] and 0 <= int(full[1]) < 24
    for fields, kind in ((quick, "quick"), (full, "full")):
        words = shlex.split(fields[5])
        assert Path(words[0]).is_absolute() and Path(words[0]).name == "dkmonitor"
        assert Path(words[0]) == Path(sys.executable).parent / "dkmonitor"
        assert words[1:] == ["--config", str(dkm_sqlite.config.resolve()), "run", kind]
    # the same lines every time on this host
    assert dkm_sqlite("cron").stdout == result.stdout


def test_install_twice_into_a_crontab_file(dkm_sqlite, tmp_path):
    crontab = tmp_path / "crontab"
    crontab.write_text(OTHER)
    first = dkm_sqlite("cron", "--install", "--crontab-file", str(crontab))
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("added to") == 2
    second = dkm_sqlite("cron", "--install", "--crontab-file", str(crontab))
    assert second.returncode == 0, second.stderr
    assert second.stdout.count("already in") == 2 and "added" not in second.stdout
    text = crontab.read_text()
    assert text.startswith(OTHER)  # every other line intact, in place
    printed = dkm_sqlite("cron").stdout.splitlines()
    assert dkmonitor_lines(text) == printed


def test_install_creates_a_missing_crontab(dkm_sqlite, tmp_path):
    crontab = tmp_path / "new-crontab"
    assert dkm_sqlite("cron", "--install", "--crontab-file", str(crontab)).returncode == 0
    assert len(dkmonitor_lines(crontab.read_text())) == 2


def test_changed_schedule_is_kept_not_duplicated(tmp_path):
    lines = cron_lines(["/opt/dkm/bin/dkmonitor"], "/etc/dkm.cfg", "node1")
    custom = "0 3 * * 6 /opt/dkm/bin/dkmonitor --config=/etc/dkm.cfg -q run full  # weekly\n"
    text, result = merge(OTHER + custom, lines)
    assert result.added == (lines[0].text,) and result.present == (custom.rstrip("\n"),)
    assert text == OTHER + custom + lines[0].text + "\n"


def test_other_config_gets_its_own_lines():
    mine = cron_lines(["/usr/bin/dkmonitor"], "/etc/a.cfg", "node1")
    theirs = cron_lines(["/usr/bin/dkmonitor"], "/etc/b.cfg", "node1")
    existing = "".join(line.text + "\n" for line in theirs)
    text, result = merge(existing, mine)
    assert len(result.added) == 2 and text.startswith(existing)


def test_commented_out_lines_do_not_count():
    lines = cron_lines(["/usr/bin/dkmonitor"], None, "node1")
    existing = "".join("#" + line.text + "\n" for line in lines)
    text, result = merge(existing, lines)
    assert len(result.added) == 2


def test_paths_are_quoted_for_cron():
    (quick, _full) = cron_lines(["/opt/my tools/dkmonitor"], "/etc/100%.cfg", "h")
    command = quick.text.split(None, 5)[5]
    assert command == "'/opt/my tools/dkmonitor' --config /etc/100\\%.cfg run quick"
    _, result = merge(quick.text + "\n", [quick])
    assert result.added == ()


def test_minutes_are_spread_over_hosts():
    minutes = {cron_lines(["/x/dkmonitor"], None, f"node{i}")[0].text.split()[0] for i in range(40)}
    assert len(minutes) > 10


# ---------------------------------------------------------------- systemd


def parse_unit(text: str) -> dict[str, dict[str, str]]:
    """A unit file's sections and keys, as systemd reads them (no key repeated here)."""
    sections: dict[str, dict[str, str]] = {}
    current = None
    for line in text.splitlines():
        if not line.strip() or line.startswith("#"):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        key, _, value = line.partition("=")
        assert current is not None and key and _, line
        assert key not in current, f"{key} twice"
        current[key] = value
    return sections


def printed_units(stdout: str) -> dict[str, str]:
    """`dkmonitor systemd` output: '# /path/name' headers, each followed by that unit."""
    units: dict[str, str] = {}
    name = None
    for line in stdout.splitlines():
        if line.startswith("# /"):
            name = Path(line[2:]).name
            units[name] = ""
        else:
            assert name is not None
            units[name] += line + "\n"
    return units


def test_systemd_prints_a_service_and_timer_per_schedule(dkm_sqlite):
    result = dkm_sqlite("systemd")
    assert result.returncode == 0, result.stderr
    units = printed_units(result.stdout)
    assert sorted(units) == sorted(
        f"dkmonitor-{kind}.{suffix}"
        for kind in ("quick", "full")
        for suffix in ("service", "timer")
    )
    cron = dkm_sqlite("cron").stdout.splitlines()
    for kind, cron_line in zip(("quick", "full"), cron, strict=True):
        service = parse_unit(units[f"dkmonitor-{kind}.service"])
        assert service["Service"]["Type"] == "oneshot"
        words = shlex.split(service["Service"]["ExecStart"])
        assert words == [str(Path(sys.executable).parent / "dkmonitor"), "--config",
                         str(dkm_sqlite.config.resolve()), "run", kind]
        timer = parse_unit(units[f"dkmonitor-{kind}.timer"])
        assert timer["Install"]["WantedBy"] == "timers.target"
        assert timer["Timer"]["Persistent"] == "true"
        minute, hour = cron_line.split()[:2]
        calendar = timer["Timer"]["OnCalendar"]  # the same minutes as the crontab line
        clock = f"{int(minute):02d}:00" if hour == "*" else f"{int(hour):02d}:{int(minute):02d}"
        expected_time = f"*:{clock}" if hour == "*" else f"{clock}:00"
        assert calendar == f"*-*-* {expected_time}", (kind, calendar, cron_line)


def test_systemd_install_writes_missing_units_and_keeps_changed_ones(dkm_sqlite, tmp_path):
    unit_dir = tmp_path / "units"
    first = dkm_sqlite("systemd", "--install", "--unit-dir", str(unit_dir))
    assert first.returncode == 0, first.stderr
    assert first.stdout.count("written: ") == 4
    assert "systemctl daemon-reload && systemctl enable --now" in first.stdout
    written = sorted(unit_dir.iterdir())
    assert [p.name for p in written] == sorted(printed_units(dkm_sqlite("systemd").stdout))
    assert all(p.stat().st_mode & 0o777 == 0o644 for p in written)

    changed = unit_dir / "dkmonitor-full.timer"
    changed.write_text(changed.read_text().replace("Persistent=true", "Persistent=false"))
    again = dkm_sqlite("systemd", "--install", "--unit-dir", str(unit_dir))
    assert again.returncode == 0, again.stderr
    assert again.stdout.count("already there: ") == 3
    assert f"left as it is (it differs from what dkmonitor would write): {changed}" in again.stdout
    assert "Persistent=false" in changed.read_text()


def test_systemd_install_does_not_write_through_a_symlink(dkm_sqlite, tmp_path):
    unit_dir = tmp_path / "units"
    unit_dir.mkdir()
    elsewhere = tmp_path / "elsewhere"
    (unit_dir / "dkmonitor-quick.service").symlink_to(elsewhere)
    result = dkm_sqlite("systemd", "--install", "--unit-dir", str(unit_dir))
    assert result.returncode == 0, result.stderr
    assert not elsewhere.exists()
    assert "left as it is" in result.stdout and "dkmonitor-quick.service" in result.stdout


def test_systemd_report_units_two_hours_after_the_full_run(dkm_sqlite, tmp_path):
    """`systemd --report DIR`: a report service and timer, as `cron --report DIR` offers."""
    output = tmp_path / "my report"
    units = printed_units(dkm_sqlite("systemd", "--report", str(output)).stdout)
    assert "dkmonitor-report.service" in units and "dkmonitor-report.timer" in units
    words = shlex.split(parse_unit(units["dkmonitor-report.service"])["Service"]["ExecStart"])
    assert words[-3:] == ["report", "--output", str(output)]
    full = parse_unit(units["dkmonitor-full.timer"])["Timer"]["OnCalendar"].split()[1]
    report = parse_unit(units["dkmonitor-report.timer"])["Timer"]["OnCalendar"].split()[1]
    (full_hour, full_minute, _), (hour, minute, _) = full.split(":"), report.split(":")
    assert (int(hour), minute) == ((int(full_hour) + 2) % 24, full_minute)
    cron_report = [line for line in dkm_sqlite("cron", "--report", str(output)).stdout
                   .splitlines() if " report " in line]
    assert len(cron_report) == 1 and cron_report[0].split()[:2] == [minute.lstrip("0") or "0",
                                                                  str(int(hour))]


def test_systemd_units_pass_systemd_analyze_verify(dkm_sqlite, tmp_path):
    """The units are parsed above everywhere; where systemd-analyze exists it checks them too."""
    unit_dir = tmp_path / "units"
    assert dkm_sqlite("systemd", "--install", "--unit-dir", str(unit_dir),
                      "--report", str(tmp_path / "report")).returncode == 0
    for path in unit_dir.iterdir():
        assert parse_unit(path.read_text())
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        return  # parsed above; `systemd-analyze verify` needs Debian's systemd package
    done = subprocess.run([analyze, "verify", *map(str, sorted(unit_dir.iterdir()))],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert "dkmonitor-" not in done.stderr, done.stderr  # no warning about our units


def test_systemd_quotes_odd_paths():
    from dkmonitor.systemd import unit_files

    units = {u.name: u.text for u in unit_files(["/opt/my tools/dkmonitor"], "/etc/100%.cfg", "h")}
    exec_start = parse_unit(units["dkmonitor-quick.service"])["Service"]["ExecStart"]
    assert exec_start == '"/opt/my tools/dkmonitor" --config /etc/100%%.cfg run quick'

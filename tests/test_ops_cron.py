"""`dkmonitor cron`: the lines for this host, and an idempotent install."""

from __future__ import annotations

import shlex
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

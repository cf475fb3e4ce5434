"""One age rule for the scanner and the cleaner (issue 12, item 5)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from dkmonitor.clean import verify
from dkmonitor.scan import ScanOptions
from dkmonitor.scan.age import AGE_BASES, DAY, AgeRule


def test_the_cleaner_rechecks_with_the_scanners_rule() -> None:
    assert verify.AgeRule is AgeRule


def test_scan_options_carry_one_rule() -> None:
    rule = AgeRule(30, 1_700_000_000.0, "mtime")
    assert ScanOptions(rule).age is rule
    assert ScanOptions(old_days=30, now=1_700_000_000.0, age_basis="mtime").age == rule
    with pytest.raises(TypeError):
        ScanOptions(old_days=30)


def test_unknown_basis_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown age basis 'birth'"):
        AgeRule(30, 0.0, "birth")


@pytest.mark.parametrize("basis", AGE_BASES)
def test_old_is_strictly_past_the_limit(tmp_path: Path, basis: str) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x")
    st = os.stat(path)
    last = AgeRule(1, 0.0, basis).last_use(st)
    assert AgeRule(1, last + DAY, basis).age_seconds(st) == DAY
    assert not AgeRule(1, last + DAY, basis).is_old(st)
    assert AgeRule(1, last + DAY + 1, basis).is_old(st)
    assert AgeRule(1, last - 5, basis).age_seconds(st) == 0.0

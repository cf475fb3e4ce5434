import pytest

from dkmonitor.units import human_bytes, human_count


@pytest.mark.parametrize(
    ("count", "text"),
    [
        (None, "-"),
        (0, "0 B"),
        (1023, "1023 B"),
        (1024, "1.00 KiB"),
        (1536, "1.50 KiB"),
        (10239, "10.0 KiB"),
        (1048575, "1.00 MiB"),  # rounding reaches the next unit
        (5 * 2**40, "5.00 TiB"),
        (-4096, "-4.00 KiB"),
    ],
)
def test_human_bytes(count, text):
    assert human_bytes(count) == text


def test_human_count():
    assert human_count(1234567) == "1,234,567"
    assert human_count(None) == "-"

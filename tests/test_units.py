"""Rates and sizes as users write them."""

import pytest

from netprobe.units import UnitError, format_rate, mbit, parse_rate, parse_size


@pytest.mark.parametrize(
    ("text", "bytes_per_second"),
    [
        ("200Mbit", 25e6),
        ("100M", 12.5e6),  # a bare prefix on a rate means bits
        ("1G", 125e6),
        ("50Mbps", 6.25e6),
        ("100 Mbit/s", 12.5e6),
        ("12.5MB/s", 12.5e6),  # capital B means bytes
        ("1MiB/s", 2**20),
        (1000, 1000.0),
    ],
)
def test_rates_in_the_units_users_write(text, bytes_per_second):
    assert parse_rate(text) == pytest.approx(bytes_per_second)


@pytest.mark.parametrize(
    ("text", "n_bytes"),
    [("100M", 100_000_000), ("1.5GB", 1_500_000_000), ("512KiB", 524_288), ("10", 10), (7, 7)],
)
def test_sizes_in_the_units_users_write(text, n_bytes):
    assert parse_size(text) == n_bytes


@pytest.mark.parametrize("text", ["fast", "", "10 parsecs", "-5M", "1.5Gb"])
def test_nonsense_is_refused_with_an_example(text):
    with pytest.raises(UnitError, match=r"not a|negative|bits"):
        parse_size(text)


@pytest.mark.parametrize("text", ["20", " 100 ", "fast", "10 Mbitx"])
def test_a_rate_without_a_unit_is_refused(text):
    with pytest.raises(UnitError, match=r"needs a unit|not a rate"):
        parse_rate(text)


def test_rates_print_in_megabits():
    assert mbit(125e6) == 1000
    assert format_rate(11.8e6) == "94.4 Mbit/s"

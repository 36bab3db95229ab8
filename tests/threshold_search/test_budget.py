import pytest

from threshold_search import format_macs, parse_budget


@pytest.mark.parametrize("text,expected", [
    ("1.5G", 1.5e9), ("800M", 8e8), ("250K", 2.5e5), ("2e9", 2e9), ("3g", 3e9), (" 1.5 G ", 1.5e9),
    (".5G", 5e8), ("1200", 1200.0), (1.5e9, 1.5e9), (7, 7.0),
])
def test_parse_budget(text, expected):
    assert parse_budget(text) == pytest.approx(expected)


@pytest.mark.parametrize("text", ["", "G", "1.5T", "1.5GG", "abc", "-1G", "0", "0G", "nan", "inf", "1,5G"])
def test_parse_budget_rejects_with_a_clear_message(text):
    with pytest.raises(ValueError, match="budget"):
        parse_budget(text)


@pytest.mark.parametrize("value", [None, True, [1.5e9]])
def test_parse_budget_rejects_other_types(value):
    with pytest.raises(TypeError, match="budget"):
        parse_budget(value)


def test_parse_budget_rejects_non_finite_numbers():
    with pytest.raises(ValueError, match="budget"):
        parse_budget(float("inf"))


def test_format_macs():
    assert format_macs(1.5e9) == "1.50G"
    assert format_macs(8e8) == "800.00M"

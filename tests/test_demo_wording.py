"""Counted nouns (`demo.wording`): "1 item", "2 items", never "1 items" or "item(s)"."""

from __future__ import annotations

import pytest

from demo.wording import count, was_were


@pytest.mark.parametrize("n, noun, plural, expected", [
    (0, "item", None, "0 items"), (1, "item", None, "1 item"), (2, "input", None, "2 inputs"),
    (1, "entry", "entries", "1 entry"), (3, "entry", "entries", "3 entries"),
])
def test_count(n, noun, plural, expected):
    assert count(n, noun, plural) == expected


def test_was_were():
    assert (was_were(1), was_were(0), was_were(2)) == ("was", "were", "were")


def test_count_refuses_a_non_integer():
    with pytest.raises(TypeError, match="count n must be an int, got '3'"):
        count("3", "item")  # type: ignore[arg-type]

"""Counted nouns for the page's sentences ("1 item", "2 items"): a person reads "1 inputs" or "item(s)" as a
slip. Pure functions, no UI imports."""

from __future__ import annotations


def count(n: int, noun: str, plural: str | None = None) -> str:
    """``n`` and the noun, singular for exactly 1: ``count(1, "item")`` is "1 item", ``count(2, "item")`` "2 items";
    ``plural`` for a noun that does not take an "s" (``count(2, "entry", "entries")``)."""
    if isinstance(n, bool) or not isinstance(n, int):
        raise TypeError(f"count n must be an int, got {n!r}")
    return f"{n} {noun if n == 1 else plural or noun + 's'}"


def was_were(n: int) -> str:
    """The verb "to be" in the past that agrees with ``n`` things ("1 was", "2 were")."""
    return "was" if n == 1 else "were"

"""The one error family of the model library: every error `gemel` raises on purpose is a `GemelError`.

A caller (the CLI, the demo, a script) catches ``GemelError`` to show a person its message, and lets every
other exception through as the bug it is (sqlite-utils' errors share a base the same way). ``GemelError``
subclasses ``ValueError`` so that code written against the older, separate classes keeps working.
"""

from __future__ import annotations


class GemelError(ValueError):
    """Base of every error `gemel` raises on purpose; the message names the bad value and the fix."""


class InputError(GemelError):
    """A query is unusable (empty caption, mention not in the caption, caption too long ...)."""

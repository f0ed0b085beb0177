"""The demo's own error family: a `StudioError` is a mistake of the person using the app (a bad batch, a
decision with no name ...), shown to them as one sentence; anything else is a bug and goes to the log."""

from __future__ import annotations


class StudioError(ValueError):
    """Base of the errors the demo raises on purpose; the message names the problem and the fix."""

"""The demo's own error family and how errors reach the page: a `StudioError` is a mistake of the person using
the app (a bad batch, a decision with no name ...), shown to them as one sentence (`user_facing`), as are the
libraries' own errors; anything else is a bug and goes to the log."""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

from annotations import AnnotationError
from gemel.errors import GemelError

from .mentions import MentionError

log = logging.getLogger("demo.handlers")
T = TypeVar("T")


class StudioError(ValueError):
    """Base of the errors the demo raises on purpose; the message names the problem and the fix."""


# each package's error family, and a typed mention the caption does not hold (`demo.mentions`, which imports no
# UI module, so its error is not a StudioError); the rest are bugs
_USER_ERRORS = (AnnotationError, GemelError, StudioError, MentionError)


def _sentence(context: str, error: BaseException) -> str:
    text = str(error).strip() or type(error).__name__
    return f"{context}: {text}" + ("" if text.endswith((".", "!", "?")) else ".")


def user_facing(context: str) -> Callable[[Callable[..., T]], Callable[..., T]]:
    """Turn the named errors of the libraries into ``gr.Error("<context>: <their message>.")``, and any
    other exception into a short sentence (its traceback goes to the server log, not to the page)."""

    def wrap(fn: Callable[..., T]) -> Callable[..., T]:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> T:
            try:
                return fn(*args, **kwargs)
            except gr.Error:
                raise
            except _USER_ERRORS as e:
                raise gr.Error(_sentence(context, e), print_exception=False) from e
            except Exception as e:
                log.exception("%s failed", context)
                raise gr.Error(f"{context}: an internal error occurred ({type(e).__name__}); "
                               "the details are in the server log.", print_exception=False) from e

        return inner

    return wrap

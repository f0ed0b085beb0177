"""GEMEL Studio's model library: multimodal entity linking with GEMEL (Shi et al., LREC-COLING 2024).

    from gemel import Linker
    linker = Linker.load("offline")
    prediction = linker.link("photo.jpg", "Hopper wrote the first compiler.", "Hopper")

No UI and no database here: ``annotations/`` stores corrections (its ``loop`` module turns them into
demonstrations), ``demo/`` is the Gradio app. Only the command-line layer imports ``annotations``, lazily.
Every error raised on purpose is a ``gemel.errors.GemelError``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gemel.errors import GemelError, InputError
from gemel.types import Candidate, Demonstration, Example, Prediction

__all__ = ["Linker", "Example", "Candidate", "Demonstration", "Prediction", "GemelError", "InputError",
           "load_profile", "list_profiles"]
__version__ = "0.1.0"

if TYPE_CHECKING:
    from gemel.config import list_profiles, load_profile
    from gemel.linker import Linker


def __getattr__(name: str):
    """Import torch-heavy parts on first use, so `import gemel` (and `gemel --help`) stays fast."""
    if name == "Linker":
        from gemel.linker import Linker

        return Linker
    if name in ("load_profile", "list_profiles"):
        from gemel import config

        return getattr(config, name)
    raise AttributeError(f"module 'gemel' has no attribute {name!r}")

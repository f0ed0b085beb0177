"""GEMEL Studio's Gradio demo: link a mention, correct the answer, review a queue, look at the data.

    from demo import build_app, launch
    app = build_app(linker, store)      # a loaded gemel.Linker and an open annotations.Store
    launch(app)                         # or: python app.py / python -m demo

Modules: `app` (layout and wiring), `handlers` (what the buttons do, no components), `render` (escaped
HTML), `mentions` (mention suggestions), `batch` (review batches, example gallery), `config`
(settings, auth, launch arguments), `hub` (optional push of exports to a dataset repo), ``keyboard.js``.
"""

from __future__ import annotations

from typing import Any

__all__ = ["build_app", "launch", "main"]


def __getattr__(name: str) -> Any:
    """Import gradio on first use, so `import demo.mentions` stays light."""
    if name in __all__:
        from . import app

        return getattr(app, name)
    raise AttributeError(f"module 'demo' has no attribute {name!r}")

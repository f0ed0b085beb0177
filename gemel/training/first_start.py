"""A profile's first start fits its own decision rule: the ranker for the profile's image scorer.

A ranker weighs image features whose meaning is the image scorer's (CLIP's zero-shot logits are not the offline
scorer's z-scores), so a profile whose scorer no shipped ranker was fitted on (``hub``, ``paper``: CLIP) says
``[rank] fit_at_start = true``. At its first start, when no ranker fitted for that scorer is cached, the shipped
fitting data (:data:`FITTING_DATA`: the seed pool, the dev split and the out-of-pool photos, inside the package;
never the test split) is linked once with the profile to gather each mention's features (``collect``), the ranker
is fitted with cross-validation (``fit_with_cv``), and it is written to ``<cache>/rankers/<scorer version>.json``
(:func:`gemel.rank.model.fitted_path`) with its gathered features beside it and the scorer recorded in it. Later
starts read it (``Linker`` does, :func:`gemel.linker.with_fitted_ranker`); until it exists the profile's unfitted
rule decides and every answer says so.

The Space runs this in the background before it switches to the profile (``demo/space.py``), so the fit stays off
the serving path; ``gemel fit-ranker --profile hub`` does the same from the command line. One link per mention:
about two minutes for the 124 shipped mentions on 2 CPU cores (docs/HUB.md).
"""

from __future__ import annotations

import json
import logging
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from gemel.errors import GemelError
from gemel.rank.model import Ranker, fitted_path, scorer_record, scorer_version
from gemel.sources import SourceError, package_path
from gemel.training.ranker import Group, collect, fit_with_cv, groups_file, write_groups
from gemel.types import Example

log = logging.getLogger(__name__)

ASSETS = Path(__file__).resolve().parents[1] / "assets"
# the labelled data a first start fits on, inside the package (pictures in assets/images and assets/eval/pictures;
# three out-of-pool pictures are read from scikit-image where it is installed): never assets/eval/test.jsonl
FITTING_DATA = (ASSETS / "seed" / "examples.jsonl", ASSETS / "eval" / "dev.jsonl", ASSETS / "eval" / "outpool.jsonl")

Progress = Callable[[int, int], None]  # (mentions linked so far, total)


def fitting_examples(path: str | Path) -> list[Example]:
    """The labelled examples of a fitting file whose pictures can be read here: a line whose picture comes from a
    package that is not installed (``package:skimage/...`` in a Space) is left out, and the log says so."""
    from gemel.kb.demonstrations import load_jsonl_examples

    path = Path(path)
    try:
        return load_jsonl_examples(path, path.stem)
    except SourceError:
        pass
    lines = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
    kept = [d for d in lines if _readable(d.get("image"))]
    log.info("%s: %d of %d lines left out of the fitting data: their pictures come from a package not installed",
             path.name, len(lines) - len(kept), len(lines))
    with tempfile.TemporaryDirectory() as tmp:  # the lines kept, their relative pictures made absolute
        copy = Path(tmp) / path.name
        copy.write_text("".join(json.dumps({**d, "image": _absolute(d.get("image"), path)}) + "\n" for d in kept),
                        encoding="utf-8")
        return load_jsonl_examples(copy, path.stem)


def _readable(image: str | None) -> bool:
    if not image or not image.startswith("package:"):
        return True
    try:
        package_path(image)
    except SourceError:
        return False
    return True


def _absolute(image: str | None, path: Path) -> str | None:
    """A relative picture of ``path``'s lines made absolute as `load_jsonl_examples` finds it (next to the file,
    else one folder up)."""
    if not image or image.startswith("package:") or Path(image).is_absolute():
        return image
    near = path.parent / image
    return str((near if near.exists() else path.parent.parent / image).resolve())


def gather(linker: Any, files: Sequence[str | Path], *, progress: bool = True, on_each: Progress | None = None
           ) -> list[Group]:
    """Each fitting file's mentions linked once by ``linker`` as the learned rule links (its candidates, every
    feature) without deciding anything; ``on_each(done, total)`` over all files."""
    gatherer = linker.replace(ranker=Ranker.uniform())
    data = [(Path(f), fitting_examples(f)) for f in files]
    total, done = sum(len(examples) for _, examples in data), 0
    groups: list[Group] = []
    for path, examples in data:
        step = (lambda d, n, before=done: on_each(before + d, total)) if on_each is not None else None
        groups += collect(gatherer, examples, progress=progress, desc=path.stem, on_each=step, file=path.name)
        done += len(examples)
    return groups


def save_fitted(ranker: Ranker, groups: Sequence[Group], path: str | Path, linker: Any) -> Path:
    """Write ``ranker`` to ``path`` recording the image scorer (and profile) it was fitted with, its gathered
    features beside it (a refit from corrections starts from them)."""
    ranker.manifest["scorer"] = scorer_record(linker.image_scorer)
    ranker.manifest["profile"] = linker.config.name
    kept = write_groups(groups, groups_file(path))
    ranker.manifest["groups"] = kept.name
    return ranker.save(path)


def fit_for_profile(linker: Any, files: Sequence[str | Path] = FITTING_DATA, out: str | Path | None = None, *,
                    folds: int = 5, progress: bool = True, on_each: Progress | None = None) -> tuple[Any, Path]:
    """Fit the ranker of ``linker``'s profile for its image scorer on ``files`` and write it (default: the cache,
    :func:`gemel.rank.model.fitted_path`); returns the ranker and its path."""
    out = Path(out) if out is not None else fitted_path(scorer_version(linker.image_scorer))
    t0 = time.perf_counter()
    log.info("fitting the decision rule of %r for the image scorer %s on %s (once; then cached in %s)",
             linker.config.name, scorer_version(linker.image_scorer), ", ".join(Path(f).name for f in files), out)
    groups = gather(linker, files, progress=progress, on_each=on_each)
    k = min(folds, len(groups))
    if k < 2:
        raise GemelError(f"{len(groups)} labelled mention(s) in {[str(f) for f in files]} are too few to fit a ranker")
    ranker = fit_with_cv(groups, files=files, k=k)
    path = save_fitted(ranker, groups, out, linker)
    log.info("ranker %s fitted on %d mentions in %.0f s (%d-fold CV accuracy %.3f): %s", ranker.version,
             len(groups), time.perf_counter() - t0, k, ranker.manifest["cv"]["accuracy"], path)
    return ranker, path


def with_ranker(linker: Any, files: Sequence[str | Path] = FITTING_DATA, *, progress: bool = True,
                on_each: Progress | None = None) -> Any:
    """``linker`` deciding with its profile's ranker: as it is when it has one (named, or cached for its scorer)
    or its profile does not fit one at start; else a variant with the ranker fitted now on ``files`` and cached."""
    if not linker.awaits_fit:
        return linker
    _, path = fit_for_profile(linker, files, progress=progress, on_each=on_each)
    return linker.replace(config=linker.config.replace(rank={"model": str(path)}))

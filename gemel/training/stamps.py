"""A second set of real photos: Debian's Tux Paint stamps, photographs of animals, fruit, planets and tools.

Every other real photo of the project (the seed pool, dev, test, the out-of-pool split) comes from the same few
sample pictures of scikit-image, matplotlib and OpenCV, so dev, test and the ranker's fitting data share their
pictures, and a change that helps one photo can only be judged on a handful. The package
``tuxpaint-stamps-default`` (GPL-2, Debian ``main``) holds 194 photographs of 149 KB entities, each cut out on a
transparent background (:data:`STAMPS_TABLE`, reviewed by eye: drawings, silhouettes and renders left out).

They are split **by entity** (:func:`split_of`, a hash of the title): ``stamps-dev`` is fitting data for the
ranker, ``stamps-test`` a held-out photo set no part of the linker has seen, entity or picture. Each photo gets
two captions (:func:`stamp_captions`): one that names the entity as the corpus captions do (an ambiguous
template when the KB has another entity of the same name, ``Mouse`` / ``Computer mouse``, else one with words of
its description) and one that names nothing ("This is the thing in the picture."), where only the picture
decides. ``gemel corpus stamps`` writes both files; ``make stamps`` installs the package first.
"""

from __future__ import annotations

import hashlib
import random
from pathlib import Path
from typing import Sequence

from PIL import Image

from gemel.images import to_rgb
from gemel.kb.entities import KnowledgeBase
from gemel.training.captions import (
    AMBIGUOUS_TEMPLATES,
    HIDDEN_THING,
    Caption,
    mention_for,
    read_pairs,
    shared_surfaces,
    surface_of,
)
from gemel.training.corpus import CorpusError, CorpusItem

STAMPS_TABLE = Path(__file__).resolve().parents[2] / "assets" / "corpus" / "stamps.tsv"
STAMPS_DIR = Path("/usr/share/tuxpaint/stamps")  # where Debian's tuxpaint-stamps-default installs them
PACKAGE = "tuxpaint-stamps-default"
LICENCE = "GPL-2 (Debian tuxpaint-stamps-default, copyright Bill Kendrick and the Tux Paint contributors)"
MAX_SIDE = 384  # px: the longer side of a written photo, as for the shipped assets' photos
JPEG_QUALITY = 85  # as for the shipped assets' photos
TEST_SHARE = 0.5  # share of entities (not photos) held out in stamps-test
# {m} mention, {d} the entity's KB description: the text decides (the corpus's templates, for a photo).
PHOTO_TEMPLATES = (
    "{m}, the {d}, in a picture.",
    "A photo of {m} ({d}).",
    "The picture shows {m}, that is the {d}.",
    "{m} is known as the {d}.",
)


def read_table(path: str | Path = STAMPS_TABLE) -> list[tuple[str, str]]:
    """(stamp path, KB title) rows of the reviewed table; '#' lines are comments."""
    return read_pairs(path, "stamp path<TAB>KB title")


def split_of(entity: str, test_share: float = TEST_SHARE) -> str:
    """"test" or "dev" for an entity, by a hash of its title: every photo of one entity falls in one split."""
    h = int(hashlib.sha1(entity.encode("utf-8")).hexdigest()[:8], 16) / 0xFFFFFFFF
    return "test" if h < test_share else "dev"


def stamp_items(kb: KnowledgeBase, stamps_dir: str | Path = STAMPS_DIR,
                table: Sequence[tuple[str, str]] | None = None) -> list[CorpusItem]:
    """The table's photos as corpus items (image = the stamp's path relative to ``stamps_dir``), each checked:
    the file is there and the title is a KB entity."""
    stamps_dir = Path(stamps_dir)
    if not stamps_dir.is_dir():
        raise CorpusError(f"{stamps_dir} does not exist: install Debian's {PACKAGE} (`make stamps` does) or pass "
                          "--stamps with the folder that holds its stamps")
    items = []
    for path, title in read_table() if table is None else table:
        if not (stamps_dir / path).is_file():
            raise CorpusError(f"{stamps_dir / path} is missing: is {stamps_dir} the stamps folder of {PACKAGE}?")
        if title not in kb:
            raise CorpusError(f"{title!r} (for {path}) is not a title of the KB {kb.name!r}: correct the table")
        items.append(CorpusItem(id=f"tuxpaint/{path}", image=path, entity=title, names=(surface_of(title),),
                                source="tuxpaint", style="photo", licence=LICENCE, kind="photo",
                                concept=title, rule="table", split=split_of(title), heldout="entity"))
    return items


def write_photo(src: Path, dst: Path) -> Path:
    """The stamp composited on white, its longer side at most :data:`MAX_SIDE`, as JPEG (as an upload would be)."""
    with Image.open(src) as im:
        rgb = to_rgb(im)
    rgb.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    rgb.save(dst, "JPEG", quality=JPEG_QUALITY)
    return dst


def photo_path(item: CorpusItem) -> str:
    """Where :func:`write_photo` puts an item's photo, relative to the output folder."""
    return str(Path(item.image).with_suffix(".jpg"))


def stamp_captions(items: Sequence[CorpusItem], kb: KnowledgeBase, seed: int = 0) -> list[Caption]:
    """Two captions per photo (image = :func:`photo_path`): one naming the entity (ambiguous when its name is
    shared in the KB), one naming nothing."""
    rng = random.Random(seed)
    shared = {t: s for s, titles in shared_surfaces(kb).items() for t in titles}
    out = []
    for it in items:
        image = photo_path(it)
        if it.entity in shared:
            mention = mention_for(shared[it.entity], [it])
            out.append(Caption(f"{it.id}#0", rng.choice(AMBIGUOUS_TEMPLATES).format(m=mention), mention,
                               it.entity, image, "ambiguous", it.split))
        else:
            entity = kb.get(it.entity)
            desc = ((entity.description if entity else "") or "thing in the picture").rstrip(".")
            mention = surface_of(it.entity)
            text = rng.choice(PHOTO_TEMPLATES).format(m=mention, d=desc[:1].lower() + desc[1:])
            out.append(Caption(f"{it.id}#0", text, mention, it.entity, image, "ordinary", it.split))
        out.append(Caption(f"{it.id}#h", HIDDEN_THING[0], HIDDEN_THING[1], it.entity, image, "hidden", it.split))
    return out

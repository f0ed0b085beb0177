"""WikiDiverse (format ``wikidiverse``), in any of its three releases: `read_wikidiverse`.

Checked against github.com/wangxw5/wikiDiverse (README "Data Format" and ``eval_cands_recall.py``):

- the annotated data (passage level): a JSON array of ``[text, image URL, topic, [[mention, type, start, end,
  Wikipedia URL], ...]]`` with character offsets ``text[start:end]``; one `Example` per mention;
- the data with retrieved candidates (``{train,valid,test}_w_10cands.json``, mention level): a JSON array of
  11-element records ``[text, image URL, mention, type, left-context words, right-context words, entity URL,
  [candidate URL, ...], topic, start, end]``; the candidates' titles go to ``meta["candidates"]`` (``gemel eval
  --candidates from-data`` links among them);
- MIMIC's re-release (``wiki_diverse_{train,dev,test}.json``): MIMIC's object layout, read as in
  `gemel.data.formats.wikimel`; told apart from WikiMEL by its file name.

The entity is the Wikipedia title of the URL (`wikipedia_title`: percent-decoding, ``_`` -> space; a stray
character before ``https``, as in some released URLs, is ignored). The released images (``wikinewsImgs``) are
named `gemel.data.formats.images.wikidiverse_image_name`.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

from gemel.data.formats.errors import DatasetError, DatasetFormatError
from gemel.data.formats.files import Item, existing_file, json_records
from gemel.data.formats.images import is_url, resolve_image, wikidiverse_names
from gemel.data.formats.mentions import mention_meta
from gemel.data.formats.records import ReadConfig, is_nil, read_examples
from gemel.data.formats.splits import Split
from gemel.data.formats.wikimel import from_mimic
from gemel.types import Example


def wikipedia_title(url: Any) -> str | None:
    """The page title of a Wikipedia URL (percent-decoded, ``_`` -> space); None for a missing / "nil" URL.

    A stray character before the scheme or brackets around the URL (``nhttps://``, ``]https://``, as in some
    released WikiDiverse records) are ignored.
    """
    if is_nil(url):
        return None
    if not isinstance(url, str):
        raise TypeError(f"Wikipedia URL {url!r} is not a string")
    parts = urlsplit(url.strip().strip("[]"))
    if "/wiki/" in parts.path:
        raw = parts.path.split("/wiki/", 1)[1]
    else:
        query = dict(p.split("=", 1) for p in parts.query.split("&") if "=" in p)
        raw = query.get("title", "")
    title = unquote(raw).replace("_", " ").strip()
    if not title:
        raise DatasetError(f"no page title in Wikipedia URL {url!r}; expected https://en.wikipedia.org/wiki/Title")
    return title


def read_wikidiverse(path: str | Path, image_dir: str | Path | None = None, *, on_error: str = "raise",
                     split: Split | None = None) -> Iterator[Example]:
    """Examples of a WikiDiverse file: the annotated data (one Example per mention), the data with candidates
    (``*_w_10cands.json``) or MIMIC's re-release (``wiki_diverse_*.json``); a JSON array, or one per line.

    ``meta`` keeps ``type``, ``topic``, ``start``, ``end``, ``url``, ``image_url`` (and ``candidates``, KB
    titles); ``Example.image`` is the local file `wikidiverse_image_name` names in ``image_dir`` when given,
    else the URL.
    """
    path = existing_file(path)
    config = ReadConfig(image_dir, on_error, split)
    return read_examples(path, json_records(path), lambda rec, item: _from_wikidiverse(path, rec, item, config), config)


def _from_wikidiverse(path: Path, entry: Any, item: Item, config: ReadConfig) -> list[Example]:
    if isinstance(entry, dict):
        return [from_mimic(path, entry, item, config)]
    if isinstance(entry, list) and len(entry) == 11:
        return [_from_wikidiverse_cands(path, entry, item, config)]
    if not isinstance(entry, list) or len(entry) != 4 or not isinstance(entry[3], list):
        raise DatasetFormatError(path, item.where, "a WikiDiverse entry is [text, image URL, topic, [[mention, type, "
                                                   "start, end, URL], ...]] (annotated data) or [text, image URL, "
                                                   "mention, type, left, right, entity URL, candidates, topic, start, "
                                                   f"end] (*_w_10cands.json), got {str(entry)[:120]}")
    text, image_url, topic, mentions = entry
    _need_text(path, item.where, text)
    image, found = resolve_image(image_url if isinstance(image_url, str) else None, config, wikidiverse_names)
    meta = {"topic": topic, "image_url": image_url} | found
    return [_wikidiverse_mention(path, item, text, m, j, image, meta) for j, m in enumerate(mentions)]


def _need_text(path: Path, where: str, text: Any) -> None:
    if not isinstance(text, str) or not text.strip():
        raise DatasetFormatError(path, where, f"the text (first element) must be a non-empty string, got {text!r}")


def _wikidiverse_mention(path: Path, item: Item, text: str, m: Any, j: int, image: str | None,
                         meta: dict[str, Any]) -> Example:
    where = f"{item.where} mention {j}"
    if not isinstance(m, list) or len(m) not in (4, 5) or not isinstance(m[0], str) or not m[0].strip():
        raise DatasetFormatError(path, where, f"a mention is [mention, type, start, end, Wikipedia URL], got {m!r}")
    mention, mtype, start, end = m[:4]
    url = m[4] if len(m) == 5 else None
    located = mention_meta(path, where, text, mention, (start, end))
    entity = _entity_of_url(path, where, url)
    return Example(text=text, mention=mention, entity=entity, image=image, id=f"{item.ordinal}-{j}",
                   source="wikidiverse",
                   meta={**meta, "type": mtype, "start": start, "end": end, "url": url, **located})


def _entity_of_url(path: Path, where: str, url: Any) -> str | None:
    try:
        return wikipedia_title(url)
    except (TypeError, ValueError) as e:
        raise DatasetFormatError(path, where, f"{e}; use null or \"nil\" for a NIL mention") from e


def _from_wikidiverse_cands(path: Path, entry: list[Any], item: Item, config: ReadConfig) -> Example:
    text, image_url, mention, mtype, _left, _right, url, cands, topic, start, end = entry
    _need_text(path, item.where, text)
    if not isinstance(mention, str) or not mention.strip() or not isinstance(cands, list):
        raise DatasetFormatError(path, item.where, "in a *_w_10cands.json record the mention (third element) is a "
                                                   "non-empty string and the candidates (eighth) a list, got "
                                                   f"{mention!r} and {str(cands)[:60]}")
    located = mention_meta(path, item.where, text, mention, (start, end))
    image, found = resolve_image(image_url if isinstance(image_url, str) else None, config, wikidiverse_names)
    meta = {"type": mtype, "topic": topic, "start": start, "end": end, "url": url, "image_url": image_url,
            "candidates": _candidate_titles(path, item.where, cands)} | located | found
    return Example(text=text, mention=mention, entity=_entity_of_url(path, item.where, url), image=image,
                   id=str(item.ordinal), source="wikidiverse", meta=meta)


def _candidate_titles(path: Path, where: str, cands: list[Any]) -> list[str]:
    """KB titles of the candidates (Wikipedia URLs or titles), in order, without repeats or NIL."""
    titles: list[str] = []
    for c in cands:
        if not isinstance(c, str):
            raise DatasetFormatError(path, where, f"candidate {c!r} is not a Wikipedia URL or title")
        title = _entity_of_url(path, where, c) if "/wiki/" in c or is_url(c) else unquote(c).replace("_", " ").strip()
        if title and not is_nil(title) and title not in titles:
            titles.append(title)
    return titles

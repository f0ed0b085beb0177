"""Every profile key means something a newcomer can read, and something reads it.

Each field of the config dataclasses (one per profile section) carries a comment on its line or on the lines just
above it, and its name is read as an attribute somewhere in the library, the app or the benches outside
``gemel/config.py``: a key nothing reads is a knob that does nothing, and one without a comment a knob nobody can
explain."""

from __future__ import annotations

import ast
import dataclasses
import io
import re
import tokenize
from pathlib import Path

import pytest

from gemel import config as cfg

ROOT = Path(__file__).resolve().parents[1]
SOURCE = Path(cfg.__file__)


def section_classes() -> list[type]:
    out = []
    for f in dataclasses.fields(cfg.LinkerConfig):
        t = getattr(cfg, f.type, None) if isinstance(f.type, str) else f.type
        if dataclasses.is_dataclass(t):
            out.append(t)
    return out


def field_lines() -> dict[tuple[str, str], int]:
    """(class, field) -> the line of its annotation in gemel/config.py."""
    out = {}
    for node in ast.parse(SOURCE.read_text()).body:
        if isinstance(node, ast.ClassDef):
            for item in node.body:
                if isinstance(item, ast.AnnAssign) and isinstance(item.target, ast.Name):
                    out[(node.name, item.target.id)] = item.lineno
    return out


def comment_lines() -> tuple[set[int], set[int]]:
    """Lines with a comment, and lines that are only a comment."""
    text = SOURCE.read_text()
    tokens = tokenize.generate_tokens(io.StringIO(text).readline)
    with_comment = {t.start[0] for t in tokens if t.type == tokenize.COMMENT}
    lines = text.splitlines()
    return with_comment, {n for n in with_comment if lines[n - 1].lstrip().startswith("#")}


def commented(line: int, comments: tuple[set[int], set[int]]) -> bool:
    """A comment on the field's own line, or a comment-only line just above it."""
    with_comment, only_comment = comments
    return line in with_comment or line - 1 in only_comment


def test_the_comment_check_can_fail():
    assert commented(10, ({10}, set())) and commented(10, ({9}, {9}))
    assert not commented(10, ({9}, set()))  # the field above has a comment, this one none


def readers() -> str:
    files = [p for d in ("gemel", "demo", "annotations", "bench") for p in (ROOT / d).rglob("*.py")]
    return "\n".join(p.read_text(encoding="utf-8") for p in [*files, ROOT / "app.py"] if p != SOURCE)


KEYS = [(c.__name__, f.name) for c in section_classes() for f in dataclasses.fields(c)]


def test_the_sections_are_found():
    assert len(section_classes()) >= 8 and len(KEYS) == 38  # 50 before the ranker replaced the fused score (37), + image.class_candidates


@pytest.mark.parametrize(("section", "key"), KEYS)
def test_every_profile_key_is_explained_by_a_comment(section, key):
    line = field_lines()[(section, key)]
    assert commented(line, comment_lines()), f"{section}.{key} (gemel/config.py:{line}) has no comment on its meaning"


def test_every_profile_key_is_read_outside_the_config():
    text = readers()
    unread = [f"{s}.{k}" for s, k in KEYS if not re.search(rf"\.{k}\b|\"{k}\"|'{k}'", text)]
    assert not unread, f"profile keys nothing reads: {unread}"

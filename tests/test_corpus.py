"""The image–entity corpus: linking rules, splits, building (cached, resumable), reading, synthetic captions.

Unit tests use a tiny KB, a bag-of-words fake embedder and synthetic pictures; tests that read the real
packages (Noto, CLDR, twemoji, openmoji, simple-icons, openclipart) are marked ``corpus_packages``.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gemel.kb.entities import Entity, KnowledgeBase
from gemel.training.captions import (
    AMBIGUOUS_TEMPLATES,
    HIDDEN_FLAG,
    HIDDEN_THING,
    captions,
    flag_set,
    same_caption_groups,
    shared_surfaces,
    text_only_upper_bound,
)
from gemel.training.corpus import (
    Corpus,
    CorpusError,
    CorpusItem,
    LinkConfig,
    NameLinker,
    SplitConfig,
    assign_split,
    build_corpus,
    entity_split,
    read_table,
    singular,
)
from gemel.training.corpus_sources import Picture, cp_key, svg_metadata

KB = KnowledgeBase([
    Entity("Apple", "Fruit of the apple tree"), Entity("Apple Inc.", "American technology company"),
    Entity("Cricket (insect)", "Insect related to grasshoppers"), Entity("Cricket", "Bat-and-ball sport"),
    Entity("Frog", "Amphibian"), Entity("Germany", "Country in Central Europe"),
    Entity("Jordan", "Country in West Asia"), Entity("Moon", "Natural satellite of Earth"),
    Entity("Mole (animal)", "Small burrowing mammal"), Entity("Mole (unit)", "Unit of amount of substance"),
], name="tiny-corpus-kb")


class BagOfWords:
    """A deterministic stand-in for the text embedder: hashed word counts, L2-normalised."""

    name, dim = "bag-of-words", 64

    def encode(self, texts, progress=False):
        out = np.zeros((len(texts), self.dim), np.float32)
        for i, text in enumerate(texts):
            for w in text.lower().replace(":", " ").replace(",", " ").replace(";", " ").split():
                out[i, int(hashlib.md5(w.encode()).hexdigest(), 16) % self.dim] += 1
        return out / np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)


def linker(table: str = "", **cfg) -> NameLinker:
    emb = BagOfWords()
    return NameLinker(KB, emb, LinkConfig(table=table, **cfg), emb.encode([e.index_text() for e in KB]))


def pic(name: str, kind: str = "emoji", source: str = "noto", keywords=(), key=None, mode="RGBA") -> Picture:
    colour = int(hashlib.md5(name.encode()).hexdigest()[:2], 16)

    def load():
        im = Image.new("RGBA", (20, 18), (colour, 255 - colour, 40, 255))
        return im.convert(mode)

    key = key or name.replace(" ", "_")
    return Picture(key, source, source, (name,), tuple(keywords), "CC0-1.0", kind, f"{kind}:{key}", load)


# ---- linking ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("word,expected", [("frogs", "frog"), ("cherries", "cherry"), ("boxes", "box"),
                                           ("glass", "glass"), ("bus", "bus"), ("moon", "moon")])
def test_singular(word, expected):
    assert singular(word) == expected


@pytest.mark.parametrize("name,kind,source,title,rule", [
    ("Germany", "flag", "noto", "Germany", "exact"),
    ("frogs", "clipart", "openclipart", "Frog", "surface"),
    ("moon", "emoji", "noto", "Moon", "exact"),
])
def test_rules_exact_and_surface(name, kind, source, title, rule):
    result = linker().link(pic(name, kind, source))
    assert (result.title, result.rule) == (title, rule)


def test_a_logo_links_only_to_an_organisation():
    result = linker(min_similarity=0.05).link(pic("Apple", "logo", "simple-icons", ("american", "technology")))
    assert (result.title, result.rule) == ("Apple Inc.", "surface")
    assert linker().link(pic("Moon", "logo", "simple-icons")).title is None  # a brand named like a KB thing


def test_shared_surface_is_decided_by_the_kb_descriptions():
    result = linker(min_similarity=0.05).link(pic("Mole", "emoji", "noto", ("small", "burrowing", "mammal")))
    assert (result.title, result.rule) == ("Mole (animal)", "embedder")


def test_head_noun_needs_the_embedder_to_agree():
    lk = linker(head_min_similarity=0.2)
    assert lk.link(pic("red apple", keywords=("fruit", "apple", "tree"))).title == "Apple"
    assert lk.link(pic("two dead frogs", "clipart")).rule in ("embedder", "below-threshold")
    assert linker().link(pic("videocassette")).rule == "none"


def test_without_an_embedder_ambiguous_names_stay_unlinked():
    lk = NameLinker(KB, None, LinkConfig(table=""))
    assert lk.link(pic("Mole")).rule == "ambiguous"


def test_reviewed_table_wins_and_can_reject(tmp_path):
    table = tmp_path / "links.tsv"
    table.write_text("# comment\nmole\t*\tMole (animal)\ngermany\tnoto\t-\n")
    lk = linker(table=str(table))
    assert (lk.link(pic("Mole")).title, lk.link(pic("Mole")).rule) == ("Mole (animal)", "table")
    assert lk.link(pic("Germany", "flag")).rule == "rejected"
    assert lk.link(pic("Germany", "flag", "twemoji")).title == "Germany"  # the rejection was for noto only


def test_bad_table_line_names_the_line(tmp_path):
    table = tmp_path / "links.tsv"
    table.write_text("apple\tApple\n")
    with pytest.raises(CorpusError, match="links.tsv:1"):
        read_table(table)


def test_shipped_table_names_only_kb_titles_or_dashes():
    rows = read_table(Path(__file__).parent.parent / "assets" / "corpus" / "links.tsv")
    assert rows and all(isinstance(t, str) for t in rows.values())


# ---- splits ------------------------------------------------------------------------------------------
@settings(max_examples=200, deadline=None)
@given(entity=st.text(min_size=1, max_size=20), concept=st.text(min_size=1, max_size=20),
       style=st.sampled_from(["noto", "twemoji", "openmoji", "openclipart"]))
def test_split_is_a_function_and_entity_holdout_is_whole(entity, concept, style):
    cfg = SplitConfig()
    split, why = assign_split(entity, concept, style, cfg)
    assert (split, why) == assign_split(entity, concept, style, cfg)
    if entity_split(entity, cfg) != "train":  # a held-out entity never reaches train, in any style
        assert split == entity_split(entity, cfg) and why == "entity"
    if style == "openmoji":
        assert split != "train"
    assert (split == "train") == (why == "")


@pytest.mark.parametrize("bad", [dict(entity_test=1.0), dict(entity_test=0.6, entity_dev=0.5),
                                 dict(picture_dev=-0.1)])
def test_split_config_refuses_bad_shares(bad):
    with pytest.raises(CorpusError):
        SplitConfig(**bad)


# ---- building ---------------------------------------------------------------------------------------
NAMES = ["Germany", "Jordan", "moon", "frogs", "Apple", "Cricket", "red apple", "videocassette", "Mole"]
ODD_MODES = ["RGBA", "LA", "P", "L", "RGB", "1"]


def fake_readers():
    def noto():
        return [pic(n, "flag" if n in ("Germany", "Jordan") else "emoji", "noto", ("fruit", "apple"),
                    mode=ODD_MODES[i % len(ODD_MODES)]) for i, n in enumerate(NAMES)]

    def openmoji():
        return [pic(n, "flag" if n in ("Germany", "Jordan") else "emoji", "openmoji", ("fruit", "apple"))
                for n in NAMES]

    def logos():
        return [pic("Apple", "logo", "simple-icons", ("american", "technology"))]

    def broken():
        def load():
            raise OSError("truncated")
        return [Picture("x", "broken", "broken", ("Moon",), (), "CC0-1.0", "emoji", "emoji:x", load)]

    return {"noto": noto, "openmoji": openmoji, "simple-icons": logos, "broken": broken}


@pytest.fixture()
def built(tmp_path):
    lk = linker(min_similarity=0.05, head_min_similarity=0.2)
    report = build_corpus(KB, lk, tmp_path / "c", ["noto", "openmoji", "simple-icons", "broken"],
                          split=SplitConfig(entity_test=0.0, entity_dev=0.0, picture_test=0.0, picture_dev=0.0),
                          progress=False, readers=fake_readers())
    return tmp_path / "c", report


def test_build_writes_manifest_images_and_report(built):
    folder, report = built
    corpus = Corpus.load(folder)
    assert len(corpus.items) == report.items > 0
    assert corpus.manifest_sha256 == report.manifest_sha256 == (folder / "manifest.sha256").read_text().strip()
    for it in corpus.items:
        assert it.entity in KB and Image.open(corpus.path(it)).size == (20, 18)
    assert report.read["noto"] == len(NAMES) and report.linked("noto") == report.linked("openmoji")
    assert report.rules["noto/none"] >= 1 and report.rules["broken/unreadable"] == 1
    logo = [it for it in corpus.items if it.source == "simple-icons"]
    assert [it.entity for it in logo] == ["Apple Inc."]
    assert json.loads((folder / "report.json").read_text())["items"] == report.items
    assert any("linked" in line for line in report.lines())


def test_build_is_resumable_and_deterministic(built, tmp_path):
    folder, report = built
    first = {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")}
    again = build_corpus(KB, linker(min_similarity=0.05, head_min_similarity=0.2), folder,
                         ["noto", "openmoji", "simple-icons", "broken"],
                         split=SplitConfig(entity_test=0.0, entity_dev=0.0, picture_test=0.0, picture_dev=0.0),
                         progress=False, readers=fake_readers())
    assert again.manifest_sha256 == report.manifest_sha256
    assert {p: p.stat().st_mtime_ns for p in folder.rglob("*.png")} == first  # nothing rendered twice


def test_held_out_style_and_entities_are_disjoint_from_train(tmp_path):
    readers = fake_readers()
    report = build_corpus(KB, linker(min_similarity=0.05, head_min_similarity=0.2), tmp_path / "c",
                          ["noto", "openmoji"], split=SplitConfig(entity_test=0.3, entity_dev=0.2),
                          progress=False, readers=readers)
    corpus = Corpus.load(tmp_path / "c")
    train = corpus.split("train")
    assert report.items == len(corpus.items)
    assert not {it.entity for it in corpus.items if it.heldout == "entity"} & {it.entity for it in train}
    assert not {it.image for it in train} & {it.image for it in corpus.items if it.split != "train"}
    assert all(it.split == "test" for it in corpus.items if it.style == "openmoji" and it.heldout == "style")


def test_unknown_source_and_missing_corpus_are_clear_errors(tmp_path):
    with pytest.raises(CorpusError, match="unknown source"):
        build_corpus(KB, linker(), tmp_path, ["nope"], readers=fake_readers(), progress=False)
    with pytest.raises(CorpusError, match="gemel corpus build"):
        Corpus.load(tmp_path / "none")


# ---- names of pictures -----------------------------------------------------------------------------
def test_cp_key_drops_variation_selector():
    assert cp_key("\u2764\ufe0f") == "2764" and cp_key("🇩🇪") == "1f1e9-1f1ea"


def test_svg_metadata(tmp_path):
    svg = tmp_path / "a.svg"
    svg.write_text('<svg><metadata><dc:title>Red &amp; green apple</dc:title><dc:subject><rdf:Bag>'
                   '<rdf:li>fruit</rdf:li><rdf:li>unsorted</rdf:li></rdf:Bag></dc:subject></metadata></svg>')
    assert svg_metadata(svg) == ("Red & green apple", ("fruit",))
    assert svg_metadata(tmp_path / "missing.svg") == ("", ())


# ---- captions -----------------------------------------------------------------------------------------
def test_groups_have_one_caption_distinct_entities_and_only_test_pictures(tmp_path):
    build_corpus(KB, linker(min_similarity=0.05, head_min_similarity=0.2), tmp_path / "c",
                 ["noto", "openmoji", "simple-icons"], split=SplitConfig(), progress=False, readers=fake_readers())
    corpus = Corpus.load(tmp_path / "c")
    assert {"Apple", "Apple Inc."} <= shared_surfaces(KB, corpus.items)["apple"]
    groups = same_caption_groups(corpus, KB, split="test")
    for g in groups:
        assert 2 <= len(g.members) <= 3 and len({m.entity for m in g.members}) == len(g.members)
        assert {m.text for m in g.members} == {g.text} and g.mention in g.text
        assert all(m.split == "test" for m in g.members)
        assert any(g.text == t.format(m=g.mention) for t in AMBIGUOUS_TEMPLATES)
    if groups:
        assert text_only_upper_bound(groups) <= 0.5
    for c in captions(corpus, KB, "test"):
        assert c.mention in c.text and c.entity in KB
    assert all(it.kind == "flag" for it in flag_set(corpus))


def test_the_recurring_split_has_entities_in_several_styles_and_captions_shared_in_pairs(tmp_path):
    from gemel.training.captions import recurring_split

    def item(entity: str, style: str, kind: str = "emoji", split: str = "test") -> CorpusItem:
        key = f"{entity}-{style}"
        return CorpusItem(f"{style}/{key}", f"images/{key}.png", entity, (entity.lower(),), style, style, "OFL", kind,
                          key, "exact", split, "entity")

    items = [item(e, s) for e in ("Cat", "Dog", "Owl", "Fox") for s in ("noto", "twemoji", "openmoji")]
    items += [item("Japan", "noto", "flag"), item("Japan", "twemoji", "flag"), item("Bee", "noto"),
              item("Ant", "noto", split="train"), item("Ant", "twemoji", split="train")]
    rows = recurring_split(Corpus(tmp_path, items, "x"), entities=10, per_entity=3)
    by_entity: dict[str, list] = {}
    for r in rows:
        by_entity.setdefault(r.entity, []).append(r)
        assert r.mention in r.text and r.split == "test" and r.mention.lower() == "the thing"
    assert len(by_entity) == 4 and set(by_entity) < {"Cat", "Dog", "Owl", "Fox", "Japan"}  # 2+ styles, in pairs
    for pics in by_entity.values():
        assert len({p.text for p in pics}) == len(pics) >= 2  # each picture its own caption
        assert len({Path(p.image).name.split("-")[1] for p in pics}) == len(pics)  # in distinct styles
    pairs = [[r for r in rows if r.group == group] for group in {r.group for r in rows}]
    assert all(len(members) <= 2 for members in pairs) and sum(len(members) == 2 for members in pairs) >= 4
    for members in pairs:  # the trap: one caption, two entities (alone where the partner has fewer pictures)
        assert len({r.text for r in members}) == 1 and len({r.entity for r in members}) == len(members)


def test_reviewed_shared_names_add_groups_after_the_kb_ones(tmp_path):
    from gemel.training.captions import read_shared_names

    table = read_shared_names()
    assert table["hockey"] == {"Field hockey", "Ice hockey"} and "bear" not in table  # a hypernym, not a homonym
    kb = KnowledgeBase([Entity(t, "d") for t in ("Nut (fruit)", "Nut (hardware)", "Field hockey", "Ice hockey",
                                                 "Hockey stick")])

    def item(entity: str, key: str) -> CorpusItem:
        return CorpusItem(f"noto/{key}", f"images/{key}.png", entity, (entity.lower(),), "noto", "noto", "OFL",
                          "emoji", key, "exact", "test", "style")

    corpus = Corpus(tmp_path, [item(t, str(i)) for i, t in enumerate(kb.titles)], "x")
    plain = same_caption_groups(corpus, kb, reviewed={})
    groups = same_caption_groups(corpus, kb, reviewed={"hockey": {"Field hockey", "Ice hockey", "Not in the KB"}})
    assert [g.text for g in groups[:len(plain)]] == [g.text for g in plain] and len(plain) == 2
    extra = groups[len(plain):]
    assert len(extra) == 2 and all(g.mention == "Hockey" for g in extra)
    assert all({m.entity for m in g.members} == {"Field hockey", "Ice hockey"} for g in extra)
    bad = tmp_path / "bad.tsv"
    bad.write_text("# a comment\nmouse\tMouse\nhockey only\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"bad.tsv:3: expected 'name<TAB>KB title'"):
        read_shared_names(bad)


def test_hidden_captions_name_nothing_and_keep_the_entity(tmp_path):
    build_corpus(KB, linker(min_similarity=0.05, head_min_similarity=0.2), tmp_path / "c",
                 ["noto", "openmoji", "simple-icons"], split=SplitConfig(), progress=False, readers=fake_readers())
    corpus = Corpus.load(tmp_path / "c")
    plain = captions(corpus, KB, "train")
    assert plain and all(c.kind != "hidden" for c in plain)
    every = captions(corpus, KB, "train", hidden=1.0)
    assert [c.entity for c in every] == [c.entity for c in plain] and [c.id for c in every] == [c.id for c in plain]
    assert all(c.kind == "hidden" and (c.text, c.mention) in (HIDDEN_FLAG, HIDDEN_THING) for c in every)
    assert all(c.entity not in c.text for c in every)
    with pytest.raises(ValueError, match=r"hidden=1.5 must be a share in \[0, 1\]"):
        captions(corpus, KB, "train", hidden=1.5)


def test_caption_command_refuses_a_hidden_share_over_one(capsys):
    from gemel.cli.main import main

    assert main(["corpus", "captions", "--out", "x", "--hidden", "2"]) != 0
    assert "--hidden 2.0 is not a share: give a number from 0 to 1" in capsys.readouterr().err


# ---- real packages --------------------------------------------------------------------------------
@pytest.mark.corpus_packages
@pytest.mark.parametrize("source", ["noto", "twemoji", "openmoji", "simple-icons", "openclipart"])
def test_real_source_reads_named_pictures(source):
    from gemel.training.corpus_sources import READERS, SourceUnavailable

    try:
        pictures = list(READERS[source]())
    except SourceUnavailable as e:  # `make corpus-debs` / `make setup` installs them
        pytest.skip(str(e))
    assert len(pictures) > 1000
    im = pictures[len(pictures) // 2].load()
    assert im.mode == "RGBA" and max(im.size) <= 256


@pytest.mark.corpus_packages
def test_real_flags_are_named_by_territory():
    from gemel.training.corpus_sources import SourceUnavailable, emoji_names

    try:
        emoji_names(cp_key("🇩🇪"))
    except SourceUnavailable as e:  # `make corpus-debs` installs unicode-cldr-core
        pytest.skip(str(e))
    assert emoji_names(cp_key("🇩🇪"))[0] == ("Germany",) and emoji_names(cp_key("🇩🇪"))[2] == "flag"
    assert emoji_names(cp_key("🇨🇿"))[0] == ("Czechia", "Czech Republic")
    assert emoji_names(cp_key("🍎"))[0] == ("red apple",)


@pytest.mark.parametrize("cmd", [[], ["build"], ["train-projection"], ["captions"], ["top"]])
def test_every_corpus_command_has_help(cmd, capsys):
    from gemel.cli.main import main

    with pytest.raises(SystemExit) as e:
        main(["corpus", *cmd, "--help"])
    assert e.value.code == 0 and "usage: gemel corpus" in capsys.readouterr().out


def test_in_pool_held_out_pictures_have_a_trained_entity(tmp_path):
    build_corpus(KB, linker(min_similarity=0.05, head_min_similarity=0.2), tmp_path / "c", ["noto", "openmoji"],
                 split=SplitConfig(entity_test=0.2, entity_dev=0.1, picture_test=0.3, picture_dev=0.2),
                 progress=False, readers=fake_readers())
    corpus = Corpus.load(tmp_path / "c")
    trained = {it.entity for it in corpus.split("train")}
    for it in corpus.items:
        if it.split != "train":
            assert (it.entity in trained) == (it.heldout in ("style", "picture"))


def test_a_style_fold_moves_one_styles_training_pictures_to_dev(tmp_path):
    """The ranker's fitting data in an unfamiliar style: a scorer trained on the fold never saw those pictures."""
    import argparse

    from gemel.cli.corpus import write_style_fold

    def item(entity: str, style: str, split: str = "train", heldout: str = "") -> CorpusItem:
        key = f"{entity}-{style}"
        return CorpusItem(f"{style}/{key}", f"images/{key}.png", entity, (entity.lower(),), style, style, "OFL",
                          "emoji", key, "exact", split, heldout)

    items = [item("Apple", "noto"), item("Apple", "twemoji"), item("Moon", "twemoji"),
             item("Mole (animal)", "openmoji", "test", "style")]
    corpus = Corpus(tmp_path, items, "x")
    folded = corpus.holding_out_style("twemoji")
    by_id = {it.id: it for it in folded.items}
    assert (by_id["twemoji/Apple-twemoji"].split, by_id["twemoji/Apple-twemoji"].heldout) == ("dev", "style")
    assert by_id["twemoji/Moon-twemoji"].heldout == "entity"  # no training picture of the Moon is left: out-of-pool
    assert by_id["noto/Apple-noto"].split == "train" and by_id["openmoji/Mole (animal)-openmoji"].split == "test"
    assert folded.manifest_sha256 != corpus.manifest_sha256 and corpus.items == items  # the corpus is unchanged
    with pytest.raises(CorpusError, match=r"style 'openmoji' has no training pictures .* one of \['noto', 'twemoji'\]"):
        corpus.holding_out_style("openmoji")
    write_style_fold(folded, KB, tmp_path, argparse.Namespace(seed=0, hidden=0.0, hold_out_style="twemoji"))
    rows = [json.loads(line) for line in (tmp_path / "style-dev.jsonl").read_text().splitlines()]
    assert [r["entity"] for r in rows] == ["Apple"] and rows[0]["image"].endswith("Apple-twemoji.png")
    assert (tmp_path / "groups-dev.jsonl").is_file() and (tmp_path / "recurring-dev.jsonl").is_file()

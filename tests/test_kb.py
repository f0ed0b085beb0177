"""Tests for gemel/kb/entities.py: every readable format, malformed input named at file:line, search order, text helpers."""

from __future__ import annotations

import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gemel.kb.entities import Entity, KBError, KnowledgeBase

RECORDS = [
    {"title": "Grace Hopper", "description": "American computer scientist", "extract": "She wrote a compiler."},
    {"title": "Mercury (planet)", "description": "Smallest planet", "extract": "Mercury is a planet."},
    {"title": "Zoë Saldaña", "description": "Actress", "extract": ""},
]
ENTITIES = [Entity(r["title"], r["description"], r["extract"]) for r in RECORDS]


def write(path, text: str):
    path.write_text(text, encoding="utf-8")
    return path


# ---- formats ----------------------------------------------------------------------------------------
def test_reads_the_ovos_summaries_dict(tmp_path):
    data = {r["title"]: {**r, "topic": "People"} for r in RECORDS}
    kb = KnowledgeBase.load(write(tmp_path / "summaries.json", json.dumps(data)))
    assert kb.entities == ENTITIES


def test_reads_a_json_list(tmp_path):
    kb = KnowledgeBase.load(write(tmp_path / "kb.json", json.dumps(RECORDS)))
    assert kb.entities == ENTITIES


def test_reads_jsonl_with_blank_lines_and_a_bom(tmp_path):
    lines = [json.dumps(r, ensure_ascii=False) for r in RECORDS]
    kb = KnowledgeBase.load(write(tmp_path / "kb.jsonl", "\ufeff" + lines[0] + "\n\n" + "\n".join(lines[1:])))
    assert kb.entities == ENTITIES


def test_reads_tsv_title_description_extract(tmp_path):
    text = "".join(f"{r['title']}\t{r['description']}\t{r['extract']}\r\n" for r in RECORDS)
    kb = KnowledgeBase.load(write(tmp_path / "kb.tsv", text))
    assert kb.entities == ENTITIES


def test_reads_txt_titles_only(tmp_path):
    kb = KnowledgeBase.load(write(tmp_path / "titles.txt", "Grace Hopper\n\n  Moon  \nCat"))
    assert kb.titles == ["Grace Hopper", "Moon", "Cat"]
    assert all(e.description == "" and e.extract == "" for e in kb)


def test_saved_folder_round_trips(tmp_path):
    kb = KnowledgeBase(ENTITIES, name="mine")
    out = kb.save(tmp_path / "built")
    assert out == tmp_path / "built" / "kb.jsonl"
    again = KnowledgeBase.load(tmp_path / "built", name="mine")
    assert again.entities == kb.entities and again.name == "mine"
    assert "Zoë Saldaña" in out.read_text(encoding="utf-8")  # UTF-8, not \\u escapes


@settings(max_examples=30, deadline=None)
@given(st.lists(st.tuples(st.text(min_size=1, max_size=12).filter(lambda t: t.strip() == t and "\n" not in t),
                          st.text(max_size=12), st.text(max_size=20)), min_size=1, max_size=8))
def test_any_kb_survives_save_and_load(tmp_path_factory, rows):
    kb = KnowledgeBase(Entity(*r) for r in rows)
    again = KnowledgeBase.load(kb.save(tmp_path_factory.mktemp("kb")))
    assert again.entities == kb.entities


# ---- malformed input --------------------------------------------------------------------------------
@pytest.mark.parametrize("name,text,message", [
    ("kb.jsonl", '{"title": "A"}\n{"title": "B"\n', r"kb\.jsonl:2: not valid JSON"),
    ("kb.jsonl", '{"title": "A"}\n\n{"description": "no title"}\n', r"kb\.jsonl:3: a KB record needs a non-empty"),
    ("kb.jsonl", '{"title": "A"}\n["A"]\n', r"kb\.jsonl:2: a KB record needs"),
    ("kb.jsonl", '{"title": "   "}\n', r"kb\.jsonl:1: a KB record needs a non-empty 'title'"),
    ("kb.tsv", "A\tfirst\n\tdescription only\n", r"kb\.tsv:2: a description without a title"),
    ("kb.json", '[{"title": "A"}, {"name": "B"}]', r"kb\.json: record 1: a KB record needs"),
    ("kb.json", '{"A": {"title": "A"}, "B": "just text"}', r"kb\.json: record 1: a KB record needs"),
    ("kb.json", '[{"title": "A"},', r"kb\.json' is not valid JSON"),
    ("kb.json", '"a string"', r"expected a JSON list or dict of records"),
    ("kb.csv", "title,description\nA,b\n", r"cannot read knowledge base .*kb\.csv.*use \.json, \.jsonl, \.tsv or \.txt"),
])
def test_malformed_input_names_the_file_and_line(tmp_path, name, text, message):
    with pytest.raises(KBError, match=message):
        KnowledgeBase.load(write(tmp_path / name, text))


@pytest.mark.parametrize("name", ["kb.jsonl", "kb.tsv"])
def test_bytes_that_are_not_utf8_are_named_at_their_line(tmp_path, name):
    path = tmp_path / name
    good = b'{"title": "A"}\n' if name.endswith("jsonl") else b"A\tx\n"
    path.write_bytes(good * 3 + "Caf\xe9\tlatin-1\n".encode("latin-1"))
    with pytest.raises(KBError, match=rf"{name}:4: not UTF-8 text.*save the file as UTF-8"):
        KnowledgeBase.load(path)


def test_missing_file_points_to_kb_build(tmp_path):
    with pytest.raises(KBError, match=r"does not exist \(build one with `gemel kb build`\)"):
        KnowledgeBase.load(tmp_path / "nope.jsonl")
    with pytest.raises(KBError, match=r"kb\.jsonl' does not exist"):
        KnowledgeBase.load(tmp_path)  # a folder without kb.jsonl


@pytest.mark.parametrize("text", ["", "\n\n", "  \t\n"])
def test_empty_kb_is_refused(tmp_path, text):
    with pytest.raises(KBError, match="has no entities"):
        KnowledgeBase.load(write(tmp_path / "kb.tsv", text), name="empty")


# ---- the collection ---------------------------------------------------------------------------------
def test_duplicates_collapse_and_the_first_wins(tmp_path):
    text = "Moon\tfirst\nCat\t\n  Moon \tsecond\nMoon\tthird\n"
    kb = KnowledgeBase.load(write(tmp_path / "kb.tsv", text))
    assert kb.titles == ["Moon", "Cat"]
    assert kb.get("Moon").description == "first"
    assert len(kb) == 2 and list(kb) == kb.entities
    assert kb.duplicates == ["Moon", "Moon"]  # counted, so `gemel kb build` can say what it skipped


def test_an_interrupted_save_leaves_the_earlier_kb_whole(tmp_path, monkeypatch):
    import gemel.kb.entities as kb_module

    KnowledgeBase([Entity("Moon", "old")]).save(tmp_path)
    calls = {"n": 0}
    real = kb_module.json.dumps

    def failing(obj, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt  # the user stops the build half-way
        return real(obj, **kw)

    monkeypatch.setattr(kb_module.json, "dumps", failing)
    with pytest.raises(KeyboardInterrupt):
        KnowledgeBase([Entity("Cat", "new"), Entity("Dog", "new")]).save(tmp_path)
    monkeypatch.undo()
    assert KnowledgeBase.load(tmp_path).titles == ["Moon"]  # the complete earlier KB, not a half-written one
    KnowledgeBase([Entity("Cat", "new"), Entity("Dog", "new")]).save(tmp_path)
    assert KnowledgeBase.load(tmp_path).titles == ["Cat", "Dog"]


def test_titles_are_stripped_and_blank_titles_dropped():
    kb = KnowledgeBase([Entity("  Moon "), Entity("   "), Entity("Cat")])
    assert kb.titles == ["Moon", "Cat"]
    assert kb.get("Moon") == Entity("Moon")


def test_lookup():
    kb = KnowledgeBase(ENTITIES, name="people")
    assert "Grace Hopper" in kb and "grace hopper" not in kb and 3 not in kb
    assert kb.index("Mercury (planet)") == 1
    assert kb.get("Nobody") is None
    with pytest.raises(KeyError, match="'Nobody' is not an entity of the knowledge base 'people'"):
        kb.index("Nobody")


# ---- search -----------------------------------------------------------------------------------------
SEARCH_KB = KnowledgeBase(Entity(t) for t in [
    "Jordan River", "Michael Jordan", "Jordan", "Jordanian dinar", "Air Jordan", "Transjordan", "Cat",
    "Jordan (name)",
])


def test_search_orders_exact_prefix_word_prefix_substring():
    got = SEARCH_KB.search("jordan", limit=100)
    assert got[0] == "Jordan"  # exact
    assert set(got[1:4]) == {"Jordan River", "Jordanian dinar", "Jordan (name)"}  # prefix
    assert got[1:4] == sorted(got[1:4], key=len)  # shortest first within a bucket
    assert got[4:6] == ["Air Jordan", "Michael Jordan"]  # a word starts with the query; shortest first
    assert got[6:] == ["Transjordan"]  # the query inside a word
    assert "Cat" not in got


def test_search_word_prefix_beats_substring():
    kb = KnowledgeBase([Entity("Catamaran"), Entity("Bobcat"), Entity("Big Cat")])
    assert kb.search("cat") == ["Catamaran", "Big Cat", "Bobcat"]


@pytest.mark.parametrize("query", ["JORDAN", "  jordan  ", "Jordan"])
def test_search_ignores_case_and_outer_spaces(query):
    assert SEARCH_KB.search(query) == SEARCH_KB.search("jordan")


def test_search_collapses_inner_spaces():
    assert SEARCH_KB.search("michael   jordan") == ["Michael Jordan"]


@pytest.mark.parametrize("limit", [0, 1, 3])
def test_search_limit(limit):
    assert SEARCH_KB.search("jordan", limit=limit) == SEARCH_KB.search("jordan", limit=100)[:limit]


@pytest.mark.parametrize("query", ["", "   "])
def test_empty_query_finds_nothing(query):
    assert SEARCH_KB.search(query) == []


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="jordanicte ", min_size=1, max_size=6), st.integers(0, 10))
def test_search_results_are_distinct_titles_containing_the_query(query, limit):
    got = SEARCH_KB.search(query, limit)
    q = " ".join(query.lower().split())
    assert len(got) <= limit and len(set(got)) == len(got)
    assert all(t in SEARCH_KB and q in t.lower() for t in got)
    if q and len(got) < limit:  # nothing that contains the query is left out
        assert set(got) == {t for t in SEARCH_KB.titles if q in t.lower()}


# ---- text helpers -----------------------------------------------------------------------------------
@pytest.mark.parametrize("title,surface", [
    ("Mercury (planet)", "Mercury"),
    ("Jordan (name)", "Jordan"),
    ("Apple Inc.", "Apple Inc."),
    ("Grace Hopper", "Grace Hopper"),
    ("The (Very) Hungry", "The (Very) Hungry"),  # only a trailing qualifier goes
    ("(film)", "(film)"),  # nothing would remain: keep the title
])
def test_surface(title, surface):
    assert Entity(title).surface == surface


HOPPER = ("Grace Brewster Hopper (née Murray; December 9, 1906 – January 1, 1992) was an American computer "
          "scientist. She was one of the first programmers of the Harvard Mark I computer.")


@pytest.mark.parametrize("extract,first", [
    (HOPPER, HOPPER.split(" She was")[0]),
    ("Hopper was a rear admiral in the U.S. Navy. She retired in 1986.",
     "Hopper was a rear admiral in the U.S. Navy."),
    ("The U.S. Navy is the naval branch. It was founded in 1775.", "The U.S. Navy is the naval branch."),
    ("Washington, D.C. is the capital of the United States. It is on the Potomac.",
     "Washington, D.C. is the capital of the United States."),
    ("St. Louis is a city in the U.S. state of Missouri. It lies on the Mississippi.",
     "St. Louis is a city in the U.S. state of Missouri."),
    ("Sgt. Pepper's Lonely Hearts Club Band is an album. It was released in 1967.",
     "Sgt. Pepper's Lonely Hearts Club Band is an album."),
    ("Cecil B. DeMille, known as Mr. DeMille, was a filmmaker. He made epics.",
     "Cecil B. DeMille, known as Mr. DeMille, was a filmmaker."),
    ("John F. Kennedy was a president. He was shot in 1963.", "John F. Kennedy was a president."),
    ("It is about 3.5 m long. It swims.", "It is about 3.5 m long."),
    ('She wrote "A Manual." It was the first.', 'She wrote "A Manual."'),
    ("Is it? Yes! It is.", "Is it?"),
    ("The Cretaceous ended 66 Ma. It followed the Jurassic.", "The Cretaceous ended 66 Ma."),
    ("Only one sentence without a full stop", "Only one sentence without a full stop"),
    ("  Spaced\n out   text. Second.", "Spaced out text."),
    ("", ""),
])
def test_first_sentence(extract, first):
    assert Entity("x", "", extract).first_sentence() == first


def test_first_sentence_is_cut_at_max_chars():
    assert Entity("x", "", "a" * 500 + ". Next.").first_sentence(max_chars=40) == "a" * 40
    assert len(Entity("x", "", HOPPER).first_sentence()) <= 300


@pytest.mark.parametrize("title,url", [
    ("Grace Hopper", "https://en.wikipedia.org/wiki/Grace_Hopper"),
    ("Mercury (planet)", "https://en.wikipedia.org/wiki/Mercury_(planet)"),
    ("AC/DC", "https://en.wikipedia.org/wiki/AC/DC"),
    ("Who Framed Roger Rabbit?", "https://en.wikipedia.org/wiki/Who_Framed_Roger_Rabbit%3F"),
    ("AT&T", "https://en.wikipedia.org/wiki/AT%26T"),
    ("Zoë", "https://en.wikipedia.org/wiki/Zo%C3%AB"),
])
def test_url(title, url):
    assert Entity(title).url == url


def test_index_text():
    assert Entity("Moon", "Natural satellite").index_text() == "Moon: Natural satellite"
    assert Entity("Moon").index_text() == "Moon"


def test_rows_named_finds_surface_names_and_aliases_up_to_case():
    from gemel.kb.entities import Entity, KnowledgeBase

    kb = KnowledgeBase([Entity("Mercury (planet)", "planet"), Entity("Mercury (element)", "element"),
                        Entity("Moon", "satellite", aliases=("Luna",)), Entity("Dog", "animal"),
                        Entity("Wolf", "animal")])
    assert kb.rows_named("Wolves") == [4]  # an irregular plural too
    assert kb.rows_named("mercury") == [0, 1] and kb.rows_named(" LUNA ") == [2] and kb.rows_named("dog") == [3]
    assert kb.rows_named("cat") == [] and kb.rows_named("mercury", limit=1) == [0]
    assert kb.rows_named("Dogs") == [3] and kb.rows_named("moons") == [2]  # a plural finds its singular


def test_the_names_an_entry_gives_itself_become_its_aliases():
    from gemel.kb.entities import _entity, names_given

    candy = _entity({"title": "Candy", "description": "Sweet confection",
                     "extract": "Candy, also known as sweets, is a confection. It is sweet."}, "test")
    assert candy.aliases == ("sweets",)
    assert names_given("Association football", "Team sport", "Association football, commonly known as football or "
                       "soccer, is a team sport.") == ["football", "soccer"]
    assert names_given("Kiwifruit", "", "Kiwifruit, or Chinese gooseberry, is a berry.") == ["Chinese gooseberry"]
    assert names_given("The arts", "", "The arts, or creative arts, are practices.") == ["creative arts"]
    assert names_given("Poaceae", "Family commonly known as grasses", "") == ["grasses"]
    # a list that shares its head, a description after "known as", a name cut inside brackets: none is a name
    assert names_given("Rubiaceae", "", "Rubiaceae is commonly known as the coffee, madder, or bedstraw family.") == []
    assert names_given("X", "", "X is also known as a very long phrase describing it at some length.") == []
    assert names_given("Titanium dioxide", "", "Titanium dioxide, also known as titanium(IV) oxide, is an oxide.") == []
    kb = KnowledgeBase([candy, _entity({"title": "Poaceae", "description": "Family commonly known as grasses"}, "t")])
    assert kb.rows_named("Sweets") == [0] and kb.rows_named("grass") == [1]  # an alias's plural, the mention's singular


def test_aliases_a_source_lists_are_kept_as_they_are():
    from gemel.kb.entities import _entity, _tsv_entity

    record = {"title": "Candy", "extract": "Candy, also known as sweets, is a confection.", "aliases": ["Sweet"]}
    assert _entity(record, "test").aliases == ("Sweet",)
    assert _tsv_entity("Candy\t\tCandy, also known as sweets, is a confection.\tSweet").aliases == ("Sweet",)
    assert _tsv_entity("Candy\t\tCandy, also known as sweets, is a confection.").aliases == ("sweets",)

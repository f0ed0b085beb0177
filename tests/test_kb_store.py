"""Tests for the built, memory-mapped KB: gemel/kb/build.py (streaming, resumable, sharded build),
gemel/kb/store.py (opening it lazily) and the linker over it."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest
from conftest import TINY_KB
from test_cli import profile_toml  # noqa: F401  (the tiny profile as a TOML file)

from gemel.cli.main import main
from gemel.kb.build import BuildConfig, build, merge, parse_shard
from gemel.kb.entities import Entity, KBError, KnowledgeBase, read_numbered
from gemel.kb.index import KBIndexConfig
from gemel.kb.store import StoredKB, open_kb, partial_of
from gemel.models.embedder import TextEmbedder

SMALL = BuildConfig(chunk=4, embed_batch=3, progress=False)


@pytest.fixture(scope="module")
def embedder(tiny_config):
    return TextEmbedder.load(tiny_config.embedder, tiny_config.base_dir)


@pytest.fixture
def source(tmp_path):
    """TINY_KB as JSONL, plus a duplicate title, an empty title and aliases on two entries."""
    recs = [{"title": t, "description": d, "extract": x} for t, d, x in TINY_KB]
    recs[0]["aliases"] = ["Amazing Grace", "Grandma COBOL"]
    recs[6]["aliases"] = ["Luna"]
    recs.insert(3, {"title": "Apple", "description": "again"})
    recs.insert(5, {"title": "  ", "description": "no title"})
    path = tmp_path / "src.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in recs), encoding="utf-8")
    return path


def test_build_keeps_first_titles_counts_skips_and_matches_the_in_memory_kb(source, tmp_path, embedder):
    out = tmp_path / "kb"
    report, manifest = build(source, out, embedder, config=SMALL)
    assert (report.entries, report.duplicates, report.empty) == (len(TINY_KB), 1, 1)
    assert report.examples == ["line 4: 'Apple'"]
    assert manifest["entries"] == len(TINY_KB) and manifest["index"] == {"kind": "exact"}
    assert not partial_of(out).exists()
    stored, memory = StoredKB(out), KnowledgeBase(e for _, e in read_numbered(source) if e is not None)
    assert list(stored.titles) == memory.titles and len(stored) == len(memory)
    assert [stored.titles[i] for i in range(len(stored))] == memory.titles
    for title in ("Apple", "Moon", "Mercury (planet)"):
        assert title in stored and stored.index(title) == memory.index(title)
        assert stored.get(title) == memory.get(title)
    assert "Nowhere" not in stored and stored.get("Nowhere") is None
    for q in ("jordan", "APP", "mercury", "er"):
        assert stored.search(q) == memory.search(q), q
    expected = embedder.encode([e.index_text() for e in memory])
    np.testing.assert_allclose(np.asarray(stored.vectors, np.float32), expected, atol=2e-3)


def test_aliases_are_stored_and_looked_up(source, tmp_path, embedder):
    build(source, tmp_path / "kb", embedder, config=SMALL)
    kb = StoredKB(tmp_path / "kb")
    assert kb.get("Grace Hopper").aliases == ("Amazing Grace", "Grandma COBOL")
    assert kb.rows_named("grandma  cobol") == [kb.index("Grace Hopper")]
    assert kb.rows_named("Luna") == [kb.index("Moon")]
    assert kb.rows_named("mercury") == [kb.index("Mercury (planet)"), kb.index("Mercury (element)")]
    assert kb.rows_named("Moons") == [kb.index("Moon")]  # a plural finds its singular


@pytest.mark.parametrize("content,message", [
    (b'{"title": "A"}\n{broken\n', r"src\.jsonl:2: not valid JSON"),
    (b'{"title": "A"}\n{"title": "B\xff"}\n', r"src\.jsonl:2: not UTF-8 text"),
    (b'{"title": "A"}\n["a list"]\n',
     r"src\.jsonl:2: a KB record needs a non-empty 'title' in a JSON object, got a list"),
    (b'{"title": "A", "aliases": "B"}\n', r"src\.jsonl:1: 'aliases' must be a list of strings"),
])
def test_bad_lines_stop_the_build_with_their_number_and_leave_no_kb(tmp_path, embedder, content, message):
    src = tmp_path / "src.jsonl"
    src.write_bytes(content)
    with pytest.raises(KBError, match=message):
        build(src, tmp_path / "kb", embedder, config=SMALL)
    assert not (tmp_path / "kb").exists()
    with pytest.raises(KBError, match=r"unfinished `gemel kb build`.*run the same build command again"):
        open_kb(tmp_path / "kb")
    with pytest.raises(KBError, match="unfinished"):
        open_kb(partial_of(tmp_path / "kb"))


@pytest.mark.slow  # `gemel kb build` embeds in a spawned process that imports torch and loads the embedder
def test_the_cli_reports_skips_and_bad_lines(source, tmp_path, capsys, profile_toml):  # noqa: F811 (the fixture)
    assert main(["kb", "build", str(source), "--out", str(tmp_path / "kb"), "--profile", str(profile_toml)]) == 0
    printed = capsys.readouterr().out
    assert f"read {len(TINY_KB)} entities" in printed
    assert "skipped 1 duplicate title(s), keeping the first entity of each: line 4: 'Apple'" in printed
    assert "skipped 1 record(s) with an empty title" in printed
    assert f"wrote {len(TINY_KB)} entities ({len(TINY_KB)} KB demonstrations)" in printed
    assert main(["kb", "search", "moon", "--kb", str(tmp_path / "kb")]) == 0
    assert capsys.readouterr().out == "Moon\tNatural satellite of Earth\n"
    bad = tmp_path / "bad.tsv"
    bad.write_bytes(b"A\tfirst\nB\t\xfe\n")
    assert main(["kb", "build", str(bad), "--out", str(tmp_path / "o"), "--profile", str(profile_toml)]) == 2
    assert "bad.tsv:2: not UTF-8 text" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


class _Interrupting:
    """An embedder that fails on its ``fail_at``-th call, as a killed build would stop."""

    def __init__(self, inner: TextEmbedder, fail_at: int) -> None:
        self.inner, self.fail_at, self.calls = inner, fail_at, 0
        self.name, self.dim = inner.name, inner.dim

    def encode(self, texts):
        self.calls += 1
        if self.calls == self.fail_at:
            raise KeyboardInterrupt
        return self.inner.encode(texts)


def test_an_interrupted_build_resumes_where_it_stopped(source, tmp_path, embedder):
    whole, _ = build(source, tmp_path / "whole", embedder, config=SMALL)
    flaky = _Interrupting(embedder, fail_at=3)
    with pytest.raises(KeyboardInterrupt):
        build(source, tmp_path / "kb", flaky, config=SMALL)
    progress = json.loads((partial_of(tmp_path / "kb") / "shards" / "0-of-1" / "progress.json").read_text())
    assert progress["vectors"] == 2 * SMALL.embed_batch and not progress["done"]
    counting = _Interrupting(embedder, fail_at=-1)
    report, _ = build(source, tmp_path / "kb", counting, config=SMALL)
    n = len(TINY_KB)
    assert counting.calls == -(-(n - 2 * SMALL.embed_batch) // SMALL.embed_batch) + -(-n // SMALL.embed_batch)
    assert (report.entries, report.duplicates, report.empty) == (whole.entries, 1, 1)
    np.testing.assert_array_equal(StoredKB(tmp_path / "kb").vectors, StoredKB(tmp_path / "whole").vectors)
    assert list(StoredKB(tmp_path / "kb").titles) == list(StoredKB(tmp_path / "whole").titles)


def test_shards_merged_equal_one_build(source, tmp_path, embedder):
    build(source, tmp_path / "whole", embedder, config=SMALL)
    for i in range(3):
        report, manifest = build(source, tmp_path / "kb", embedder, shard=(i, 3), config=SMALL)
        assert manifest is None
    with pytest.raises(KBError, match="unfinished"):
        open_kb(tmp_path / "kb")
    manifest = merge(tmp_path / "kb", embedder.name, SMALL)
    assert manifest["shards"] == 3
    a, b = StoredKB(tmp_path / "kb"), StoredKB(tmp_path / "whole")
    np.testing.assert_array_equal(a.vectors, b.vectors)
    np.testing.assert_array_equal(a.demo_vectors, b.demo_vectors)
    np.testing.assert_array_equal(a.demo_rows, b.demo_rows)


def test_merge_names_a_missing_shard(source, tmp_path, embedder):
    build(source, tmp_path / "kb", embedder, shard=(0, 2), config=SMALL)
    with pytest.raises(KBError, match=r"shard\(s\) \['1/2'\] of .* are missing or unfinished"):
        merge(tmp_path / "kb", embedder.name, SMALL)


def test_a_second_writer_of_the_same_kb_is_refused_and_writes_nothing(source, tmp_path, embedder):
    import os

    from gemel.kb.build import reindex, writing

    out = tmp_path / "kb"
    with writing(out):  # another `gemel kb build` of the same folder is running (flock: per open file)
        assert (tmp_path / "kb.lock").read_text().strip() == str(os.getpid())
        with pytest.raises(KBError, match=rf"another `gemel kb` process \(pid {os.getpid()}\) is writing .*kb: wait"):
            build(source, out, embedder, config=SMALL)
        assert not partial_of(out).exists() and not out.exists()
    assert not (tmp_path / "kb.lock").exists()  # released with the process's hold: the next build runs
    with writing(out, "shard-1-of-2"):  # another process embeds shard 1: shard 0 may embed beside it, not 1
        build(source, tmp_path / "kb", embedder, shard=(0, 2), config=SMALL)
        with pytest.raises(KBError, match=r"is writing shard-1-of-2 of .*kb: wait"):
            build(source, out, embedder, shard=(1, 2), config=SMALL)
    build(source, out, embedder, shard=(1, 2), config=SMALL)
    merge(out, embedder.name, SMALL)
    with writing(out):
        for call in (lambda: merge(out, embedder.name, SMALL), lambda: reindex(out, SMALL)):
            with pytest.raises(KBError, match="is writing"):
                call()
    assert reindex(out, SMALL)["index"]["kind"] == "exact"


@pytest.mark.parametrize("text,message", [("2/2", "0..1"), ("a/b", "not like 0/4"), ("1", "not like")])
def test_bad_shards_are_refused(text, message):
    with pytest.raises(KBError, match=message):
        parse_shard(text)


def test_a_large_kb_gets_an_ivf_index_whose_recall_is_measured(source, tmp_path, embedder):
    config = BuildConfig(progress=False, index=KBIndexConfig(exact_below=5, lists_per_sqrt=1.0, train_per_list=4,
                                                             k=3, target_recall=1.0))
    _, manifest = build(source, tmp_path / "kb", embedder, config=config)
    index = manifest["index"]
    assert index["kind"] == "ivf" and index["recall"] == 1.0 and 1 <= index["nprobe"] <= index["nlist"]
    kb = StoredKB(tmp_path / "kb")
    assert kb.vector_index().kind == "ivf" and kb.demo_index().kind == "ivf"


def test_the_linker_opens_a_built_kb_and_links_over_it(source, tmp_path, embedder, tiny_config, tiny_linker):
    from gemel.linker import Linker

    build(source, tmp_path / "kb", embedder, config=SMALL)
    linker = Linker.load(tiny_config.replace(kb={"source": str(tmp_path / "kb")}))
    assert isinstance(linker.kb, StoredKB) and len(linker.kb) == len(tiny_linker.kb)
    query = linker.embedder.encode(["Jordan | Jordan flows south."])
    assert linker.retrieve_candidates(query)[0] == tiny_linker.retrieve_candidates(query)[0]
    ours = {r.example.id for r in linker.kb_pool.retrieve(query, 3)}
    assert ours == {r.example.id for r in tiny_linker.kb_pool.retrieve(query, 3)}
    assert linker.name_tokens(3) == tiny_linker.name_tokens(3)
    pred = linker.link(None, "Jordan flows south.", "Jordan")
    assert pred.entity in linker.kb and all(c.name in linker.kb for c in pred.candidates)
    luna = linker.retrieve_candidates(linker.embedder.encode(["Luna | Luna rose."]), mention="Luna")
    assert linker.kb.index("Moon") in luna  # the alias brings its entity into the candidates


def test_the_linker_refuses_a_kb_of_another_embedder(source, tmp_path, embedder, tiny_config):
    from gemel.linker import Linker

    build(source, tmp_path / "kb", embedder, config=SMALL)
    manifest = json.loads((tmp_path / "kb" / "manifest.json").read_text())
    (tmp_path / "kb" / "manifest.json").write_text(json.dumps({**manifest, "embedder": "other/model"}))
    with pytest.raises(KBError, match="embedded with 'other/model'.*build the KB with this profile"):
        Linker.load(tiny_config.replace(kb={"source": str(tmp_path / "kb")}))


def test_entity_round_trip_keeps_aliases(tmp_path):
    kb = KnowledgeBase([Entity("Moon", "satellite", "", ("Luna",))])
    kb.save(tmp_path)
    assert KnowledgeBase.load(tmp_path).get("Moon").aliases == ("Luna",)


@pytest.mark.parametrize("mention,name", [("luna", "Luna"), (" LUNA ", "Luna"), ("Moon", "Moon"), ("Lun", "Moon"),
                                          (None, "Moon")])
def test_the_exact_name_rule_sees_the_alias_the_mention_names(mention, name):
    from gemel.text import names_exactly
    from gemel.kb.names import named_as

    moon = Entity("Moon", "satellite", "", ("Luna",))
    assert named_as(mention, moon) == name
    assert names_exactly("luna", named_as("luna", moon)) and not names_exactly("luna", moon.title)


def test_whole_kb_beam_search_over_a_built_kb_uses_its_trie_and_maps_names_back(source, tmp_path, embedder,
                                                                                tiny_config):
    from gemel.components import prebuilt_trie
    from gemel.linker import Linker
    from gemel.models.llm import LanguageModel

    lm = LanguageModel.tokenizer_only(tiny_config.llm, tiny_config.base_dir)
    build(source, tmp_path / "kb", embedder, config=SMALL, tokenizer=tiny_config.llm.source,
          name_tokens=lambda titles: (lm.answer_tokens(t) for t in titles))
    config = tiny_config.replace(kb={"source": str(tmp_path / "kb")}, decode={"mode": "beam", "candidates": 0})
    assert len(prebuilt_trie(config)) == len(TINY_KB)
    linker = Linker.load(config)
    pred = linker.link(None, "Jordan flows south.", "Jordan")
    assert len(pred.candidates) == config.decode.num_beams  # every beam mapped back to its KB row
    assert all(c.name in linker.kb for c in pred.candidates)


def test_reindex_switches_the_index_without_embedding_again(source, tmp_path, embedder, capsys):
    from gemel.kb.build import reindex

    build(source, tmp_path / "kb", embedder, config=SMALL)
    before = np.array(StoredKB(tmp_path / "kb").vectors)
    ivf = BuildConfig(progress=False, index=KBIndexConfig(exact_below=5, lists_per_sqrt=1.0, train_per_list=4, k=3))
    manifest = reindex(tmp_path / "kb", ivf)
    kb = StoredKB(tmp_path / "kb")
    assert manifest["index"]["kind"] == "ivf" and kb.vector_index().kind == "ivf"
    assert json.loads((tmp_path / "kb" / "manifest.json").read_text()) == manifest
    np.testing.assert_array_equal(kb.vectors, before)
    assert main(["kb", "index", str(tmp_path / "kb")]) == 0  # the default threshold: exact again
    assert "exact search" in capsys.readouterr().out
    assert StoredKB(tmp_path / "kb").vector_index().kind == "exact" and not (tmp_path / "kb" / "index").exists()


def test_the_linker_refuses_an_interrupted_build(source, tmp_path, embedder, tiny_config):
    from gemel.linker import Linker

    with pytest.raises(KeyboardInterrupt):
        build(source, tmp_path / "kb", _Interrupting(embedder, fail_at=2), config=SMALL)
    for where in (tmp_path / "kb", partial_of(tmp_path / "kb")):
        with pytest.raises(KBError, match=r"unfinished `gemel kb build` \(no manifest.json\)"):
            Linker.load(tiny_config.replace(kb={"source": str(where)}))


def test_title_index_answers_the_autocomplete_as_the_table_scan_does(tmp_path, embedder):
    """A built KB's title index (exact/prefix on lower(title), FTS5 trigrams for the rest) finds what a scan
    of the table finds, in the same order, also for LIKE's special characters, quotes and short queries."""
    import sqlite3

    titles = ["Apple", "Apple Inc.", "Pineapple", "Big Apple", "100% Juice", "A_B test", 'Say "cheese"',
              "Back\\slash", "Zürich", "ÉCOLE Normale", "app", "Mapple tree", "Snapple", "Apples and oranges"]
    src = tmp_path / "src.jsonl"
    src.write_text("".join(json.dumps({"title": t, "description": "d"}) + "\n" for t in titles), encoding="utf-8")
    out = tmp_path / "kb"
    build(src, out, embedder, config=SMALL)
    indexed = StoredKB(out)
    assert indexed._title_search
    memory = KnowledgeBase(e for _, e in read_numbered(src) if e is not None)
    scan = StoredKB(out)
    scan._title_search = False  # the old path: LIKE over the table
    queries = ["apple", "APP", "app", "ap", "a", "pple", "100%", "%", "a_b", "_", '"cheese"', 'say "', "\\",
               "back\\", "zür", "école", "ecole", "le tr", "nothing here", "  apple   inc. "]
    for q in queries:
        for limit in (3, 10):
            assert indexed.search(q, limit) == scan.search(q, limit), (q, limit)
        assert indexed.search(q) == memory.search(q), q  # 'école' finds 'ÉCOLE Normale' as Python folds it
    assert indexed.search("école") == ["ÉCOLE Normale"] and indexed.search("zürich") == ["Zürich"]
    found = indexed.search("pple")
    with sqlite3.connect(out / "entries.sqlite") as db:  # a KB indexed before the key table: SQLite's lower()
        db.execute("DROP TABLE title_keys")
        db.execute("CREATE INDEX entities_lower_title ON entities(lower(title))")
    old = StoredKB(out)
    assert old._title_search and not old._title_keys
    assert old.search("école") == [] and old.search("zür") == ["Zürich"] and old.search("pple") == found
    with sqlite3.connect(out / "entries.sqlite") as db:  # an index-less KB (built before it) ...
        db.execute("DROP TABLE title_search")
    assert not StoredKB(out)._title_search and StoredKB(out).search("pple") == found
    from gemel.kb.build import reindex

    reindex(out, SMALL)  # ... gets it from `gemel kb index`
    assert StoredKB(out)._title_search and StoredKB(out).search("pple") == found


def _load_noting_pid(config, note):
    import os

    note.write_text(str(os.getpid()))
    return TextEmbedder.load(config.embedder, config.base_dir)


def _dying_loader():
    import os

    os._exit(3)


@pytest.mark.slow  # a spawned process that imports torch and loads the embedder
def test_a_build_given_a_loader_embeds_in_another_process_and_merges_the_same(source, tmp_path, embedder,
                                                                             tiny_config):
    import functools
    import os

    build(source, tmp_path / "here", embedder, config=SMALL)
    note = tmp_path / "pid"
    _, manifest = build(source, tmp_path / "there", functools.partial(_load_noting_pid, tiny_config, note),
                        config=SMALL)
    assert int(note.read_text()) != os.getpid()  # the models were loaded elsewhere, and are gone with it
    assert manifest["embedder"] == embedder.name and manifest["entries"] == len(TINY_KB)
    np.testing.assert_array_equal(StoredKB(tmp_path / "there").vectors, StoredKB(tmp_path / "here").vectors)


@pytest.mark.slow  # a spawned process (it imports this module, so torch) that dies
def test_an_embedding_process_that_dies_is_a_sentence_and_the_build_resumes(source, tmp_path, embedder):
    with pytest.raises(KBError, match="stopped before finishing.*run the same command again"):
        build(source, tmp_path / "kb", _dying_loader, config=SMALL)
    assert partial_of(tmp_path / "kb").exists() and not (tmp_path / "kb").exists()
    _, manifest = build(source, tmp_path / "kb", embedder, config=SMALL)
    assert manifest["entries"] == len(TINY_KB)


def _sleeping_loader(note):
    import os
    import time

    note.write_text(str(os.getpid()))
    time.sleep(120)


@pytest.mark.slow  # a build in a subprocess, whose spawned child imports torch
@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="prctl(PR_SET_PDEATHSIG) is Linux's")
def test_the_embedding_process_ends_with_a_killed_build(source, tmp_path):
    """A build killed while its child embeds must not leave the child writing the shard beside the next build."""
    import os
    import signal
    import subprocess
    import time
    from pathlib import Path

    note = tmp_path / "pid"
    code = ("import functools, pathlib, sys; from gemel.kb.build import build; from test_kb_store import "
            f"_sleeping_loader; build({str(source)!r}, {str(tmp_path / 'kb')!r}, "
            f"functools.partial(_sleeping_loader, pathlib.Path({str(note)!r})))")
    tests = str(Path(__file__).parent)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([tests, os.environ.get("PYTHONPATH", "")])}
    build_proc = subprocess.Popen([sys.executable, "-c", code], env=env, stderr=subprocess.DEVNULL)
    deadline = time.time() + 90
    while not note.exists() and time.time() < deadline:
        time.sleep(0.2)
    child = int(note.read_text())
    build_proc.send_signal(signal.SIGTERM)
    build_proc.wait(timeout=30)
    while Path(f"/proc/{child}").exists() and time.time() < deadline:
        time.sleep(0.2)
    assert not Path(f"/proc/{child}").exists()

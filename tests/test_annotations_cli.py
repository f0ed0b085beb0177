"""`gemel annotations import | export | stats`: every command has --help and works on a temp DB."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest

from annotations import Store
from annotations.cli import add_subparsers, build_parser, run


def cli(*argv: str) -> int:
    return run(build_parser().parse_args(list(argv)))


@pytest.fixture
def db(tmp_path):
    path = tmp_path / "gemel.db"
    with Store.open(path) as store:
        store.record("alice", "search", "Paris", text="Obama in Paris", mention="Paris", model_entity="Paris",
                     mapper_version="v1")
        store.record("bob", "nil", text="Obama in Paris", mention="Paris", model_entity="Paris", mapper_version="v1")
    return path


@pytest.mark.parametrize("command", [[], ["import"], ["export"], ["stats"]])
def test_every_command_has_help(command, capsys):
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["annotations", *command, "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    assert "usage: gemel annotations" in out
    expected = ["import", "export", "stats"] if command == [] else ["--db"]
    assert all(word in out for word in expected)


def test_registers_on_a_foreign_dispatcher():
    parser = argparse.ArgumentParser(prog="gemel")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("link")
    add_subparsers(sub)
    args = parser.parse_args(["annotations", "stats", "--db", "x.db"])
    assert args.func is run and args.annotations_command == "stats"


def test_export_then_import_into_a_new_db(db, tmp_path, capsys):
    out = tmp_path / "out" / "corrections.jsonl"
    assert cli("annotations", "export", "--db", str(db), "--out", str(out)) == 0
    assert "exported 2 decisions" in capsys.readouterr().out
    assert len(out.read_text().splitlines()) == 2
    new_db = tmp_path / "new.db"
    assert cli("annotations", "import", str(out), "--db", str(new_db)) == 0
    assert "imported 2 decisions, skipped 0" in capsys.readouterr().out
    assert cli("annotations", "import", str(out), "--db", str(new_db)) == 0
    assert "imported 0 decisions, skipped 2" in capsys.readouterr().out


@pytest.mark.parametrize("name, args, import_rc", [("x.parquet", [], 0), ("x.data", ["--format", "parquet"], 1)])
def test_parquet_export(db, tmp_path, capsys, name, args, import_rc):
    out = tmp_path / name
    assert cli("annotations", "export", "--db", str(db), "--out", str(out), *args) == 0
    assert out.read_bytes()[:4] == b"PAR1"
    # import picks Parquet by the .parquet suffix; anything else is read as JSONL and refused cleanly
    assert cli("annotations", "import", str(out), "--db", str(tmp_path / "n.db")) == import_rc
    assert ("not UTF-8" in capsys.readouterr().err) == (import_rc == 1)


def test_stats_text_and_json(db, capsys):
    assert cli("annotations", "stats", "--db", str(db)) == 0
    text = capsys.readouterr().out
    assert "2 current decisions" in text and "alice: search=1" in text and "mapper v1: 50.0%" in text
    assert cli("annotations", "stats", "--db", str(db), "--json") == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["agreement"]["items"] == 1 and stats["per_annotator"]["bob"] == {"nil": 1}


def test_stats_nouns_agree_with_their_counts(tmp_path, capsys):
    with Store.open(tmp_path / "one.db") as store:
        store.record("alice", "search", "Paris", text="Obama in Paris", mention="Paris", model_entity="Paris")
    assert cli("annotations", "stats", "--db", str(tmp_path / "one.db")) == 0
    head = capsys.readouterr().out.splitlines()[0]
    assert head == "1 current decision (1 correction) on 1 input; 0 queue items"


def test_stats_agreement_counts_shared_inputs(db, capsys):
    assert cli("annotations", "stats", "--db", str(db)) == 0
    assert "agreement on 1 shared input: " in capsys.readouterr().out


def test_db_defaults_to_gemel_db_env(db, monkeypatch, capsys):
    monkeypatch.setenv("GEMEL_DB", str(db))
    assert cli("annotations", "stats") == 0
    assert "2 current decisions" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [
    ["annotations", "stats", "--db", "{missing}"],
    ["annotations", "export", "--db", "{missing}", "--out", "{tmp}/x.jsonl"],
    ["annotations", "import", "{tmp}/nope.jsonl", "--db", "{tmp}/new.db"],
])
def test_errors_exit_1_with_a_message(argv, tmp_path, capsys):
    argv = [a.format(missing=tmp_path / "missing.db", tmp=tmp_path) for a in argv]
    assert cli(*argv) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and ("--db" in err or "does not exist" in err)
    assert not (tmp_path / "missing.db").exists()  # a typo in --db does not create a database


# ---- import of labelled data (gold) as one annotator's decisions ---------------------------------------------
def write_gold(path, *records):
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_import_gold_with_annotator(tmp_path, capsys):
    gold = write_gold(tmp_path / "cases.jsonl", {"text": "Obama in Paris", "mention": "Paris", "entity": "Paris"},
                      {"text": "Obama in Paris", "mention": "Obama", "entity": None})
    db = tmp_path / "gold.db"
    assert cli("annotations", "import", str(gold), "--db", str(db)) == 1  # the plain MEL format needs a name
    assert "pass --annotator NAME" in capsys.readouterr().err
    assert cli("annotations", "import", str(gold), "--annotator", "gold", "--db", str(db)) == 0
    assert "imported 2 decisions, skipped 0" in capsys.readouterr().out
    assert cli("annotations", "import", str(gold), "--annotator", "gold", "--db", str(db)) == 0
    assert "imported 0 decisions, skipped 2" in capsys.readouterr().out
    with Store.open(db) as store:
        assert [(d["annotator"], d["decision"], d["entity"]) for d in store.decisions()] == [
            ("gold", "search", "Paris"), ("gold", "nil", None)]


def test_import_gold_reads_images_under_image_dir(tmp_path, capsys):
    """Labelled JSONL whose images live elsewhere (the seed pool: `seed/examples.jsonl`, `images/...`): the
    images are read under --image-dir, and without it the error names the folder searched and the flag."""
    from PIL import Image

    (tmp_path / "pictures" / "images").mkdir(parents=True)
    Image.new("RGB", (8, 8), (200, 30, 30)).save(tmp_path / "pictures" / "images" / "red.png")
    (tmp_path / "seed").mkdir()
    gold = write_gold(tmp_path / "seed" / "cases.jsonl",
                      {"text": "A red square", "mention": "red", "entity": "Red", "image": "images/red.png"})
    db = tmp_path / "gold.db"
    assert cli("annotations", "import", str(gold), "--annotator", "gold", "--db", str(db)) == 1
    err = capsys.readouterr().err
    assert f"is not under {gold.parent}" in err and "--image-dir DIR" in err
    assert cli("annotations", "import", str(gold), "--annotator", "gold", "--db", str(db),
               "--image-dir", str(tmp_path / "pictures")) == 0
    assert "imported 1 decision" in capsys.readouterr().out
    with Store.open(db) as store:
        assert [d["entity"] for d in store.decisions()] == ["Red"]


@pytest.mark.parametrize("argv, message", [
    (["--format", "wikimel"], "--format wikimel imports labelled data: pass --annotator NAME"),
    (["--format", "export", "--annotator", "gold"], "an export names the annotator of every record"),
    (["--format", "wikimel", "--annotator", "gold"], "needs the data-set readers of the gemel package"),
])
def test_import_format_errors(tmp_path, capsys, argv, message):
    gold = write_gold(tmp_path / "cases.jsonl", {"text": "Obama in Paris", "mention": "Paris", "entity": "Paris"})
    assert cli("annotations", "import", str(gold), "--db", str(tmp_path / "g.db"), *argv) == 1
    assert message in capsys.readouterr().err


def test_bad_gold_line_is_named(tmp_path, capsys):
    gold = write_gold(tmp_path / "cases.jsonl", {"text": "Obama in Paris", "mention": "Paris", "entity": "Paris"},
                      {"text": "Obama in Paris", "mention": "London", "entity": "London"})
    assert cli("annotations", "import", str(gold), "--annotator", "gold", "--db", str(tmp_path / "g.db")) == 1
    assert "cases.jsonl: line 2" in capsys.readouterr().err


FIXTURES = Path(__file__).parent / "fixtures" / "datasets"


@pytest.mark.parametrize("name, fmt, n", [("wikimel.json", "wikimel", 5), ("wikidiverse.json", "wikidiverse", None),
                                          ("gemel_wikimel.json", "gemel", None)])
def test_import_a_data_set_through_the_gemel_readers(tmp_path, capsys, name, fmt, n):
    from gemel.cli.main import main
    from gemel.data.readers import read_dataset

    expected = len(list(read_dataset(FIXTURES / name, fmt, tmp_path)))
    db = tmp_path / "gold.db"
    argv = ["annotations", "import", str(FIXTURES / name), "--format", fmt, "--image-dir", str(tmp_path),
            "--annotator", "gold", "--db", str(db)]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert f"imported {expected} decisions" in out and (n is None or expected == n)
    assert "text-only" in out  # no image was given
    with Store.open(db) as store:
        decisions = store.decisions()
    assert len(decisions) == expected and {d["annotator"] for d in decisions} == {"gold"}
    assert {d["decision"] for d in decisions} <= {"search", "nil"}


def test_a_malformed_data_set_names_its_record(tmp_path, capsys):
    from gemel.cli.main import main

    bad = tmp_path / "wikimel.json"
    bad.write_text(json.dumps([{"mentions": "a", "answer": "nil", "imgPath": ""}]))
    assert main(["annotations", "import", str(bad), "--format", "wikimel", "--annotator", "gold",
                 "--db", str(tmp_path / "g.db")]) == 2
    assert "record 0" in capsys.readouterr().err


def test_gold_then_link_with_annotations_in_two_commands(tiny_config, tiny_dir, tmp_path, capsys, monkeypatch):
    """The issue's two commands: import the team's gold, then link with it as demonstrations."""
    from conftest import tiny_profile

    from gemel.cli.main import main

    monkeypatch.setenv("GEMEL_CACHE", str(tmp_path / "cache"))
    profile = tmp_path / "tiny.toml"
    profile.write_text(_toml(tiny_profile(tiny_dir)))
    gold = write_gold(tmp_path / "cases.jsonl",
                      {"text": "Hopper taught mathematics at Vassar.", "mention": "Hopper", "entity": "Grace Hopper",
                       "image": str(tiny_dir / "img.png")})
    db = tmp_path / "gold.db"
    assert main(["annotations", "import", str(gold), "--annotator", "gold", "--db", str(db)]) == 0
    capsys.readouterr()
    assert main(["link", "--profile", str(profile), "--annotations", str(db), "--image", str(tiny_dir / "img.png"),
                 "--text", "Hopper taught mathematics at Vassar.", "--mention", "Hopper", "--json"]) == 0
    pred = json.loads(capsys.readouterr().out)  # the gold item itself is answered from the store
    assert (pred["entity"], pred["source"], pred["corrected_by"]) == ("Grace Hopper", "correction", "gold")


def _toml(profile: dict) -> str:
    lines = [f"{k} = {json.dumps(v)}" for k, v in profile.items() if not isinstance(v, dict)]
    for section, values in profile.items():
        if isinstance(values, dict):
            lines += [f"[{section}]"] + [f"{k} = {json.dumps(v)}" for k, v in values.items()]
    return "\n".join(lines) + "\n"

"""`gemel annotations import | export | stats`: every command has --help and works on a temp DB."""

from __future__ import annotations

import argparse
import json

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

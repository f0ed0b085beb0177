"""Tests for gemel/cli/main.py: help for every command, profiles, kb build/search, single and batch linking.

Linking runs the real loaders on conftest's tiny profile written as a TOML file, through ``main([...])``.
A batch holds good lines and one bad line of each kind: each bad line gets an ``error`` naming its problem,
the batch goes on, and the exit status says that some lines failed.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import pytest
from conftest import TINY_KB, tiny_profile
from PIL import Image

from gemel.cli.main import build_parser, main

KB_TITLES = {title for title, _, _ in TINY_KB}


# ---- help for every command -------------------------------------------------------------------------
def command_paths(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command path of an argparse tree: (), ("link",), ("kb",), ("kb", "build") ..."""
    paths = [prefix]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                paths += command_paths(sub, (*prefix, name))
    return paths


def listed_helps(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    """(command, its one-line help in the parent's list) for every sub-command, recursively."""
    out = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                out.append((f"{sub.prog}", helps.get(name)))
                out += listed_helps(sub)
    return out


PATHS = command_paths(build_parser())


def test_the_walk_finds_the_known_commands():
    found = {" ".join(p) for p in PATHS}
    assert {"link", "profiles", "prepare", "kb", "kb build", "kb search"} <= found
    assert len(found) == len(PATHS)  # no command registered twice


@pytest.mark.parametrize("path", PATHS, ids=lambda p: " ".join(p) or "gemel")
def test_every_command_has_help(path, capsys):
    with pytest.raises(SystemExit) as info:
        main([*path, "--help"])
    assert info.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: gemel" + "".join(f" {p}" for p in path))
    assert len(out.splitlines()) >= 3  # usage, a description or the options


def test_every_command_says_what_it_does_in_its_parents_list():
    missing = [prog for prog, text in listed_helps(build_parser()) if not text]
    assert missing == []


def test_no_command_prints_help_and_exits_2(capsys):
    assert main([]) == 2
    assert "commands" in capsys.readouterr().out
    assert main(["kb"]) == 2
    assert "build" in capsys.readouterr().out


def test_unknown_command_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["lnk"])
    assert info.value.code == 2
    assert "invalid choice: 'lnk'" in capsys.readouterr().err


# ---- profiles and kb --------------------------------------------------------------------------------
def test_profiles_lists_the_shipped_profiles_with_descriptions(capsys):
    assert main(["profiles"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines] == ["hub", "offline", "paper"]
    assert all(len(line.split()) > 2 for line in lines)


@pytest.fixture
def tsv(tmp_path) -> Path:
    path = tmp_path / "titles.tsv"
    path.write_text("".join(f"{t}\t{d}\n" for t, d, _ in TINY_KB) + "Jordan\tduplicate\n", encoding="utf-8")
    return path


def test_kb_build_writes_a_loadable_folder(tsv, tmp_path, capsys):
    out = tmp_path / "built"
    assert main(["kb", "build", str(tsv), "--out", str(out), "--jsonl"]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {len(TINY_KB)} entities to {out / 'kb.jsonl'}" in printed
    assert "skipped 1 duplicate title(s), keeping the first entity of each: 'Jordan'" in printed
    rows = [json.loads(line) for line in (out / "kb.jsonl").read_text().splitlines()]
    assert [r["title"] for r in rows] == [t for t, _, _ in TINY_KB]
    assert rows[0]["description"] == TINY_KB[0][1]


@pytest.mark.parametrize("use_folder", [False, True])
def test_kb_search_prints_title_and_description_best_first(tsv, tmp_path, capsys, use_folder):
    kb = tsv
    if use_folder:
        main(["kb", "build", str(tsv), "--out", str(tmp_path / "built"), "--jsonl"])
        capsys.readouterr()
        kb = tmp_path / "built"
    assert main(["kb", "search", "JORDAN", "--kb", str(kb)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in lines] == ["Jordan", "Jordan River", "Michael Jordan"]
    assert lines[0] == "Jordan\tCountry in West Asia"
    assert main(["kb", "search", "jordan", "--kb", str(kb), "--limit", "1"]) == 0
    assert capsys.readouterr().out.splitlines() == ["Jordan\tCountry in West Asia"]


@pytest.mark.parametrize("args,message", [
    (["kb", "search", "x", "--kb", "nowhere.tsv"], "source 'nowhere.tsv' is neither an existing path"),
    (["kb", "build", "nowhere.tsv", "--out", "o"], "does not exist"),
])
def test_kb_errors_exit_2_with_a_message(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemel: error:") and message in err


def test_kb_build_of_a_malformed_file_names_the_line(tmp_path, capsys):
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"title": "A"}\n{oops\n')
    assert main(["kb", "build", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "bad.jsonl:2: not valid JSON" in capsys.readouterr().err


# ---- linking ----------------------------------------------------------------------------------------
def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and math.isinf(v):
        return "inf" if v > 0 else "-inf"
    if isinstance(v, (int, float)):
        return repr(v)
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return json.dumps(str(v))


@pytest.fixture(scope="module")
def profile_toml(tiny_config, tiny_dir, tmp_path_factory) -> Path:
    """conftest's tiny profile as a TOML file (tiny_config registers the open_clip tiny config)."""
    path = tmp_path_factory.mktemp("profile") / "tiny.toml"
    lines = []
    for section, values in tiny_profile(tiny_dir).items():
        if isinstance(values, dict):
            lines += [f"[{section}]"] + [f"{k} = {toml_value(v)}" for k, v in values.items()]
        else:
            lines.insert(0, f"{section} = {toml_value(values)}")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(autouse=True)
def private_cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("GEMEL_CACHE", str(tmp_path_factory.getbasetemp() / "gemel-cache"))


def test_link_json_output_parses(profile_toml, tiny_dir, capsys):
    code = main(["link", "--profile", str(profile_toml), "--image", str(tiny_dir / "img.png"),
                 "--text", "Hopper painted Nighthawks in 1942.", "--mention", "Hopper", "--json"])
    assert code == 0
    pred = json.loads(capsys.readouterr().out)
    assert pred["profile"] == "tiny" and pred["mapper"] == "untrained"
    assert pred["entity"] in KB_TITLES
    assert pred["entity"] == pred["candidates"][0]["name"]
    assert {c["name"] for c in pred["candidates"]} <= KB_TITLES
    assert len(pred["demonstrations"]) == 4  # demos.n of the tiny profile
    assert pred["timings"]["total"] > 0


def test_link_text_output_is_readable(profile_toml, capsys):
    assert main(["link", "--profile", str(profile_toml), "--text", "Mercury is hot.", "--mention", "Mercury",
                 "--top", "2"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("entity: ")
    assert "profile: tiny" in out and "candidates (score = the sum of its parts" in out and "\nwhy: " in out
    ranked = [line for line in out.splitlines() if line.startswith(("  1. ", "  2. ", "  3. "))]
    assert len(ranked) == 2


@pytest.mark.parametrize("args,message", [
    ([], "gemel link needs --text and --mention (and optionally --image), or --input FILE"),
    (["--text", "Hopper wrote code."], "gemel link needs --text and --mention"),
    (["--mention", "Hopper"], "gemel link needs --text and --mention"),
    (["--input", "cases.jsonl", "--text", "x"], "give either --input (batch) or --image/--text/--mention"),
    (["--input", "nowhere.jsonl"], "batch input 'nowhere.jsonl' does not exist"),
    (["--text", "Hopper wrote code.", "--mention", "Turing"], "mention 'Turing' does not occur in the caption"),
    (["--text", "  ", "--mention", "x"], "the caption is empty"),
    (["--text", "Hopper wrote.", "--mention", "Hopper", "--image", "nope.png"], "image file 'nope.png' does not"),
    (["--profile", "nope", "--text", "Hopper wrote.", "--mention", "Hopper"], "unknown profile 'nope'"),
])
def test_link_argument_errors_exit_2_with_a_message(args, message, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["link", *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("gemel: error: ") and message in err


def test_link_bad_option_value_is_an_argparse_error(capsys):
    with pytest.raises(SystemExit) as info:
        main(["link", "--text", "a", "--mention", "a", "--top", "many"])
    assert info.value.code == 2
    assert "--top: invalid int value: 'many'" in capsys.readouterr().err


def test_link_of_an_unreadable_image_exits_2_naming_it(profile_toml, tmp_path, capsys):
    notes = tmp_path / "notes.jpg"
    notes.write_text("not a picture")
    assert main(["link", "--profile", str(profile_toml), "--image", str(notes), "--text", "Hopper wrote.",
                 "--mention", "Hopper"]) == 2
    assert "notes.jpg' is not an image PIL can read" in capsys.readouterr().err


# ---- batch ------------------------------------------------------------------------------------------
def huge_png(path: Path) -> None:
    """A valid 1x1 PNG whose header claims 100000 x 100000 pixels."""
    import struct
    import zlib

    Image.new("RGB", (1, 1)).save(path)
    data = path.read_bytes()
    ihdr = struct.pack(">II", 100_000, 100_000) + data[24:29]
    path.write_bytes(data[:16] + ihdr + struct.pack(">I", zlib.crc32(b"IHDR" + ihdr)) + data[33:])


GOOD = [
    {"id": "g-text", "text": "Mercury is close to the Sun.", "mention": "Mercury", "image": None},
    {"id": "g-rel", "text": "Apple sells phones.", "mention": "Apple", "image": "pics/red.png"},
]

# (id, line as written or a dict, the words its error must contain)
BAD = [
    ("json", '{"id": "json", "text": "Hopper", ', "line {n} is not valid JSON"),
    ("object", '["Hopper", "Hopper"]', "line {n} is not a JSON object"),
    ("no-text", {"mention": "Hopper"}, "lacks the string field(s) ['text']"),
    ("image-type", {"text": "Hopper wrote.", "mention": "Hopper", "image": 5}, "'image' must be a path string"),
    ("missing", {"text": "Hopper wrote.", "mention": "Hopper", "image": "pics/missing.png"},
     "pics/missing.png' does not exist"),
    ("folder", {"text": "Hopper wrote.", "mention": "Hopper", "image": "pics"}, "pics' is not a file"),
    ("empty", {"text": "Hopper wrote.", "mention": "Hopper", "image": "pics/empty.png"}, "empty.png' is empty"),
    ("not-image", {"text": "Hopper wrote.", "mention": "Hopper", "image": "pics/notes.jpg"},
     "notes.jpg' is not an image PIL can read"),
    ("truncated", {"text": "Hopper wrote.", "mention": "Hopper", "image": "pics/half.jpg"},
     "half.jpg' is truncated or corrupt"),
    ("huge", {"text": "Hopper wrote.", "mention": "Hopper", "image": "pics/huge.png"},
     "huge.png' is too large to decode safely"),
    ("mention", {"text": "Hopper wrote code.", "mention": "Turing"}, "mention 'Turing' does not occur"),
    ("caption", {"text": "", "mention": "Hopper"}, "the caption is empty"),
]


@pytest.fixture
def batch_dir(tmp_path) -> Path:
    pics = tmp_path / "pics"
    pics.mkdir()
    Image.new("RGB", (40, 30), (200, 30, 30)).save(pics / "red.png")
    (pics / "empty.png").write_bytes(b"")
    (pics / "notes.jpg").write_text("a caption, not a picture")
    photo = (Path(__file__).resolve().parents[1] / "assets" / "images" / "coffee.jpg").read_bytes()
    (pics / "half.jpg").write_bytes(photo[: len(photo) // 2])
    huge_png(pics / "huge.png")
    return tmp_path


def write_cases(path: Path, cases: list) -> None:
    lines = [c if isinstance(c, str) else json.dumps(c) for c in cases]
    path.write_text("\n".join(lines[:2]) + "\n\n" + "\n".join(lines[2:]) + "\n")  # a blank line is skipped


def test_batch_reports_each_bad_line_and_goes_on(profile_toml, batch_dir, capsys):
    cases = [GOOD[0]] + [line if isinstance(line, str) else {"id": cid, **line} for cid, line, _ in BAD] + [
        {**GOOD[1], "image": str(batch_dir / "pics" / "red.png")}, GOOD[1]]
    write_cases(batch_dir / "cases.jsonl", cases)
    out = batch_dir / "out.jsonl"
    code = main(["link", "--profile", str(profile_toml), "--input", str(batch_dir / "cases.jsonl"),
                 "--output", str(out)])
    assert code == 1
    assert f"{len(BAD)} of {len(cases)} lines failed" in capsys.readouterr().err
    results = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == len(cases)

    good = [results[0], results[-2], results[-1]]
    for r in good:
        assert "error" not in r
        assert r["entity"] in KB_TITLES and r["candidates"] and r["demonstrations"]
    assert [r["id"] for r in good] == ["g-text", "g-rel", "g-rel"]
    assert results[-2]["candidates"] == results[-1]["candidates"]  # relative path = the same file

    line_numbers = [1] + list(range(2, len(cases) + 1))
    line_numbers = [n + (n > 2) for n in line_numbers]  # the blank third line shifts later lines
    for (cid, _, words), r, n in zip(BAD, results[1:-2], line_numbers[1:-2]):
        assert set(r) <= {"id", "line", "error"}, cid
        assert words.format(n=n) in r["error"], (cid, r["error"])
        assert r["line"] == n
        assert r["id"] == (None if cid in ("json", "object") else cid)


def test_all_good_batch_exits_0_and_writes_to_stdout(profile_toml, batch_dir, capsys):
    write_cases(batch_dir / "good.jsonl", GOOD)
    assert main(["link", "--profile", str(profile_toml), "--input", str(batch_dir / "good.jsonl")]) == 0
    captured = capsys.readouterr()
    results = [json.loads(line) for line in captured.out.splitlines()]
    assert [r["id"] for r in results] == ["g-text", "g-rel"]
    assert all("error" not in r and r["entity"] in KB_TITLES for r in results)
    assert "failed" not in captured.err


def test_batch_line_without_id_is_named_by_its_line(profile_toml, batch_dir, capsys):
    (batch_dir / "one.jsonl").write_text(json.dumps({"text": "Moon rise.", "mention": "Moon"}) + "\n")
    assert main(["link", "--profile", str(profile_toml), "--input", str(batch_dir / "one.jsonl")]) == 0
    assert json.loads(capsys.readouterr().out)["id"] == 1


def test_kb_build_with_a_profile_writes_the_trie_the_linker_maps(profile_toml, tiny_config, tiny_dir, tmp_path,
                                                                 capsys):
    from gemel.generation.trie import ArrayTrie
    from gemel.components import prebuilt_trie
    from gemel.linker import Linker

    out = tmp_path / "kb"
    assert main(["kb", "build", str(tiny_dir / "kb.jsonl"), "--out", str(out), "--profile", str(profile_toml),
                 "--jsonl"]) == 0
    assert (out / "trie.tokenizer").read_text().strip() == tiny_config.llm.source
    config = tiny_config.replace(kb={"source": str(out)}, decode={"mode": "beam", "candidates": 0})
    trie = prebuilt_trie(config)
    linker = Linker.load(config)
    assert isinstance(trie, ArrayTrie) and len(trie) == len(linker.kb)
    for row in range(len(linker.kb)):  # every KB name is a path of the prebuilt trie, ending in EOS
        toks = linker.name_tokens(row)
        assert all(toks[j] in trie.allowed(list(toks[:j])) for j in range(len(toks)))
    assert len(linker.link(None, "Jordan flows south.", "Jordan").candidates) == config.decode.num_beams
    (out / "trie.tokenizer").write_text("another/tokenizer\n")  # made for another LLM: built afresh instead
    assert prebuilt_trie(config) is None


def test_commands_other_than_annotations_do_not_import_the_store(tmp_path):
    """Importing the annotation store pulls sqlite-utils, pandas and pyarrow (~1.2 s, ~70 MB): a KB build or a
    link that does not use it must not carry it, and its errors are still sentences."""
    import subprocess
    import sys

    code = ("import sys; from gemel.cli.main import main; "
            f"rc = main(['kb', 'build', {str(tmp_path / 'none.jsonl')!r}, '--out', {str(tmp_path / 'kb')!r}]); "
            "print(rc, 'sqlite_utils' in sys.modules, 'pandas' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.split() == ["2", "False", "False"], out.stderr
    assert "does not exist" in out.stderr and "Traceback" not in out.stderr


def test_a_removed_command_says_what_replaced_it(capsys):
    assert main(["calibrate", "--data", "dev.jsonl", "--out", "x.toml"]) == 2
    assert "fit the ranker instead, `gemel fit-ranker --data FILE" in capsys.readouterr().err
    assert main(["-v", "calibrate"]) == 2

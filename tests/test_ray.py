"""Tests for gemel/distributed (`gemel link --ray`, `gemel kb build --ray`) and the batch's resume.

With a local Ray (``ray.init(num_cpus=2)``, one per module) and conftest's tiny profile: the ``--ray`` output
equals one process's line for line (entities, error lines, order), a worker killed mid-run still gives the
whole output, a resumed run links only what the output lacks, and a KB built by Ray tasks holds the vectors
one process writes. Those are marked ``slow`` (each Ray run starts actors that import torch: ~10 s); the fast
tier checks the resume of one process, and that Ray stays an optional extra the runtime never imports.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import TINY_KB
from test_cli import BAD, GOOD, batch_dir, private_cache, profile_toml, write_cases  # noqa: F401  (fixtures)

from gemel.cli.main import load_linker, main, result_line

ROOT = Path(__file__).resolve().parents[1]
VARIES = ("timings",)  # seconds: the only part of a result that differs between two runs


def results(path: Path) -> list[dict]:
    """The output lines of a batch, without their timings."""
    return [{k: v for k, v in json.loads(line).items() if k not in VARIES} for line in path.read_text().splitlines()]


def cases_file(folder: Path) -> tuple[Path, int]:
    """test_cli's batch: good lines, one bad line of each kind, a blank line; returns (path, lines)."""
    cases = [GOOD[0]] + [line if isinstance(line, str) else {"id": cid, **line} for cid, line, _ in BAD] + [
        {"id": f"more-{i}", "text": f"{title} is here.", "mention": title} for i, (title, _, _) in enumerate(TINY_KB)]
    cases += [GOOD[1], {"text": "Moon rise.", "mention": "Moon"}]  # the last one has no id: named by its line
    write_cases(folder / "cases.jsonl", cases)
    return folder / "cases.jsonl", len(cases)


@pytest.fixture(autouse=True)
def one_thread():
    """This process links on one thread, as every actor does: floating-point sums then match to the last bit
    (on two threads a score may differ in its 7th digit, and so would a line)."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture
def single(profile_toml, batch_dir, capsys) -> tuple[Path, Path, int]:  # noqa: F811
    """The batch linked in this process: (input, output, lines)."""
    src, lines = cases_file(batch_dir)
    out = batch_dir / "single.jsonl"
    assert main(["link", "--profile", str(profile_toml), "--input", str(src), "--output", str(out)]) == 1
    capsys.readouterr()
    return src, out, lines


# ---- fast: one process's resume, and Ray an optional extra --------------------------------------------
def test_a_resumed_batch_links_only_the_lines_its_output_lacks(single, profile_toml, capsys):  # noqa: F811
    src, out, lines = single
    whole = out.read_text()
    kept = whole.splitlines(keepends=True)[:5]
    out.write_text("".join(kept) + kept[0][:40])  # killed while writing the sixth line
    assert main(["link", "--profile", str(profile_toml), "--input", str(src), "--output", str(out)]) == 1
    err = capsys.readouterr().err
    assert f"holds 5 of the {lines} lines already: linking the other {lines - 5}" in err
    assert f"{len(BAD)} of {lines} lines failed" in err
    assert results(out) == [{k: v for k, v in json.loads(x).items() if k not in VARIES} for x in whole.splitlines()]
    assert main(["link", "--profile", str(profile_toml), "--input", str(src), "--output", str(out)]) == 1
    assert f"holds {lines} of the {lines} lines already: linking the other 0" in capsys.readouterr().err
    assert len(out.read_text().splitlines()) == lines


def test_an_output_that_is_not_a_batch_result_is_refused(batch_dir, profile_toml, capsys):  # noqa: F811
    src, _ = cases_file(batch_dir)
    (batch_dir / "notes.jsonl").write_text("my notes\n")
    assert main(["link", "--profile", str(profile_toml), "--input", str(src), "--output",
                 str(batch_dir / "notes.jsonl")]) == 2
    assert "notes.jsonl line 1 is not a result of `gemel link`" in capsys.readouterr().err
    assert (batch_dir / "notes.jsonl").read_text() == "my notes\n"


@pytest.mark.parametrize("args", [["link", "--input", "{src}", "--ray"], ["kb", "build", "{kb}", "--out", "{o}",
                                                                           "--ray"]])
def test_ray_missing_is_named_with_the_extra_to_install(args, batch_dir, tiny_dir, monkeypatch, capsys):  # noqa: F811
    src, _ = cases_file(batch_dir)
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    argv = [a.format(src=src, kb=tiny_dir / "kb.jsonl", o=batch_dir / "kb") for a in args]
    assert main(argv) == 2
    assert "--ray needs Ray, an optional extra of gemel: pip install '.[ray]'" in capsys.readouterr().err
    assert not (batch_dir / "kb.partial").exists()


@pytest.mark.parametrize("args,words", [
    (["link", "--input", "x.jsonl", "--actors", "2"], "--actors goes with --ray"),
    (["kb", "build", "x.jsonl", "--out", "o", "--ray", "--shard", "0/2"], "leave out --jsonl and --shard"),
    (["kb", "build", "x.jsonl", "--out", "o", "--shards", "2"], "--shards N goes with --ray"),
])
def test_ray_options_out_of_place_are_refused(args, words, batch_dir, monkeypatch, capsys):  # noqa: F811
    monkeypatch.chdir(batch_dir)
    (batch_dir / "x.jsonl").write_text('{"text": "Moon rise.", "mention": "Moon"}\n')
    assert main(args) == 2
    assert words in capsys.readouterr().err


def test_only_gemel_distributed_imports_ray():
    """Ray is an optional extra: no other module of gemel, the demo or the app may import it."""
    found = []
    for path in sorted([*ROOT.glob("gemel/**/*.py"), *ROOT.glob("demo/**/*.py"), ROOT / "app.py"]):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            if any(n == "ray" or n.startswith("ray.") for n in names):
                found.append(str(path.relative_to(ROOT)))
    assert found and all(p.startswith("gemel/distributed/") for p in found), found


@pytest.mark.slow
def test_the_runtime_and_the_cli_load_no_ray():
    code = "import sys, gemel, gemel.linker, gemel.cli.main, gemel.distributed; print('ray' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert out.stdout.strip() == "False"


# ---- slow: a local Ray ---------------------------------------------------------------------------------
def register_tiny_clip() -> None:
    """Each Ray worker's setup: the tiny open_clip config that conftest registers in this process."""
    import open_clip

    open_clip.add_model_config(os.environ["GEMEL_TEST_CLIP"])


@pytest.fixture(scope="module")
def local_ray(tiny_dir, tiny_config, tmp_path_factory):
    """One local Ray for the module: 2 CPUs, workers that can import the tests and the tiny vision config."""
    ray = pytest.importorskip("ray")
    env = {"GEMEL_TEST_CLIP": str(tiny_dir / "clip"),
           "GEMEL_CACHE": str(tmp_path_factory.getbasetemp() / "gemel-cache"),  # test_cli's private_cache
           "PYTHONPATH": os.pathsep.join([str(ROOT / "tests"), str(ROOT)]), "OMP_NUM_THREADS": "1"}
    ray.init(num_cpus=2, include_dashboard=False, runtime_env={"env_vars": env,
                                                                "worker_process_setup_hook": register_tiny_clip})
    yield ray
    ray.shutdown()


def linked(src: Path, out: Path, profile: Path, *extra: str) -> int:
    return main(["link", "--profile", str(profile), "--input", str(src), "--output", str(out), *extra])


@pytest.mark.slow
def test_ray_output_equals_one_process_line_for_line(local_ray, single, profile_toml, capsys):  # noqa: F811
    src, one, lines = single
    out = one.with_name("ray.jsonl")
    assert linked(src, out, profile_toml, "--ray", "--actors", "2") == 1
    assert f"{len(BAD)} of {lines} lines failed" in capsys.readouterr().err
    assert results(out) == results(one)
    assert any("error" in r for r in results(out)) and results(out)[-1]["id"] == lines + 1  # its line number


@pytest.mark.slow
def test_ray_with_the_store_equals_one_process_with_it(local_ray, single, profile_toml, tmp_path,  # noqa: F811
                                                         capsys):
    """--annotations: the driver reads the store once and ships its demonstrations; the actors answer the
    stored item from them as one process does."""
    src, _, lines = single
    gold = tmp_path / "gold.jsonl"
    gold.write_text("".join(json.dumps(r) + "\n" for r in [
        {"text": "Mercury is close to the Sun.", "mention": "Mercury", "entity": "Mercury (element)"},  # GOOD[0]
        {"text": "Jordan crossed the river.", "mention": "Jordan", "entity": "Jordan River"}]))
    db = tmp_path / "gold.db"
    assert main(["annotations", "import", str(gold), "--annotator", "gold", "--db", str(db)]) == 0
    one, two = tmp_path / "one.jsonl", tmp_path / "two.jsonl"
    assert linked(src, one, profile_toml, "--annotations", str(db)) == 1
    assert linked(src, two, profile_toml, "--annotations", str(db), "--ray", "--actors", "2") == 1
    capsys.readouterr()
    assert results(two) == results(one)
    first = results(two)[0]
    assert (first["entity"], first["source"], first["corrected_by"]) == ("Mercury (element)", "correction", "gold")


def dies_once(linker, line: str, n: int, base: Path, marker: Path, at: int) -> str:
    """The batch's line linker, but the worker process that reaches line ``at`` first dies there."""
    if n == at and not marker.exists():
        marker.touch()
        os._exit(1)
    return result_line(linker, line, n, base)


@pytest.mark.slow
def test_a_worker_killed_mid_run_still_gives_the_whole_output(local_ray, single, profile_toml):  # noqa: F811
    from gemel.distributed.link import link_cases

    src, one, lines = single
    cases = [(n, line) for n, line in enumerate(src.read_text().splitlines(keepends=True), 1) if line.strip()]
    marker = src.with_name("died")
    load = functools.partial(load_linker, argparse_ns(profile_toml), None)
    link = functools.partial(dies_once, base=src.resolve().parent, marker=marker, at=cases[len(cases) // 2][0])
    out = list(link_cases(cases, load, link, actors=2))
    assert marker.exists()  # a worker did die
    assert [{k: v for k, v in json.loads(x).items() if k not in VARIES} for x in out] == results(one)


def argparse_ns(profile: Path):
    import argparse

    return argparse.Namespace(profile=str(profile), mapper=None)


@pytest.mark.slow
def test_a_resumed_ray_batch_links_only_the_lines_its_output_lacks(local_ray, single, profile_toml,  # noqa: F811
                                                                    capsys):
    src, one, lines = single
    out = one.with_name("resumed.jsonl")
    out.write_text("".join(one.read_text().splitlines(keepends=True)[:7]))
    assert linked(src, out, profile_toml, "--ray") == 1
    assert f"holds 7 of the {lines} lines already: linking the other {lines - 7}" in capsys.readouterr().err
    assert results(out) == results(one)


@pytest.mark.slow
def test_kb_built_by_ray_tasks_holds_the_vectors_of_one_process(local_ray, tiny_dir, profile_toml, tmp_path,  # noqa: F811
                                                                capsys):
    import numpy as np

    one, two = tmp_path / "one", tmp_path / "ray"
    assert main(["kb", "build", str(tiny_dir / "kb.jsonl"), "--out", str(one), "--profile", str(profile_toml)]) == 0
    assert main(["kb", "build", str(tiny_dir / "kb.jsonl"), "--out", str(two), "--profile", str(profile_toml),
                 "--ray", "--shards", "2"]) == 0
    assert f"wrote {len(TINY_KB)} entities" in capsys.readouterr().out
    for name in ("vectors.npy", "demo_vectors.npy", "demo_rows.npy"):
        a, b = np.load(one / name), np.load(two / name)
        assert a.shape == b.shape and np.allclose(a, b, atol=2e-3), name
    m1, m2 = (json.loads((d / "manifest.json").read_text()) for d in (one, two))
    assert {**m1, "shards": 2} == m2
    assert (one / "entries.sqlite").exists() and not (tmp_path / "ray.partial").exists()

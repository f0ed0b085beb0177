"""The packages keep their promises, checked on the import graph and at run time:

- the runtime (what `Linker.link` runs: `gemel`'s top level, `models`, `generation`, `kb` but its builder,
  `image`) imports nothing from `gemel.training`, `gemel.cli`, `gemel.data`, `demo` or `annotations`, not even
  inside a function;
- `annotations` never loads torch or gemel; `gemel` never loads sqlite;
- no module uses a private (``_name``) of a module in another package (inside a package is its own business);
- `demo`'s modules import each other without a cycle;
- every error the library raises on purpose belongs to one family.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TOOLING = ("gemel.training", "gemel.cli", "gemel.data", "gemel.kb.build", "demo", "annotations")


def module_name(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def source_files(*folders: str) -> list[Path]:
    return sorted(p for folder in folders for p in (ROOT / folder).rglob("*.py"))


def imports_of(path: Path) -> list[tuple[str, list[str], int]]:
    """(absolute module, imported names, line) of every import in the file, function-level ones included."""
    package = module_name(path) if path.name == "__init__.py" else module_name(path).rpartition(".")[0]
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            out += [(a.name, [], node.lineno) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = package.split(".")[: len(package.split(".")) - node.level + 1] if node.level else []
            module = ".".join([*base, node.module] if node.module else base)
            out.append((module, [a.name for a in node.names], node.lineno))
    return out


def is_runtime(module: str) -> bool:
    """gemel's top level (but __main__, the CLI's entry) and its models, generation, kb (but build), image."""
    parts = module.split(".")
    if parts[0] != "gemel" or module in ("gemel.__main__", "gemel.kb.build"):
        return False
    return len(parts) == 1 or parts[1] not in ("training", "cli", "data")


RUNTIME = [p for p in source_files("gemel") if is_runtime(module_name(p))]


def test_the_runtime_is_most_of_the_library_and_includes_the_linker():
    names = {module_name(p) for p in RUNTIME}
    assert {"gemel.linker", "gemel.image.scorer", "gemel.generation.decoding", "gemel.kb.store"} <= names
    assert not names & {"gemel.kb.build", "gemel.training.train", "gemel.cli.main", "gemel.data.evaluate"}


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: module_name(p))
def test_the_runtime_imports_no_tooling(path):
    bad = [(m, line) for m, names, line in imports_of(path)
           for target in [m, *(f"{m}.{n}" for n in names)] if target.startswith(TOOLING)
           and (target in TOOLING or target.startswith(tuple(t + "." for t in TOOLING)))]
    assert not bad, f"{module_name(path)} imports tooling: {bad}"


def _package_of(module: str) -> str:
    return module.rpartition(".")[0]


def test_no_module_uses_a_private_name_of_another_package():
    """``from pkg.mod import _x`` is allowed only inside pkg; ``obj._x`` on anything but self/cls is flagged in
    code that owns no such objects (benches, the demo, the CLI, app.py)."""
    bad = []
    for path in source_files("gemel", "demo", "annotations", "bench") + [ROOT / "app.py"]:
        me = module_name(path)
        for module, names, line in imports_of(path):
            if module.split(".")[0] not in ("gemel", "demo", "annotations"):
                continue
            private = [n for n in names if n.startswith("_") and not n.startswith("__")]
            if private and _package_of(module) != _package_of(me):
                bad.append(f"{me}:{line} imports {private} from {module}")
        if me.startswith(("bench", "demo", "gemel.cli")) or me == "app":
            bad += [f"{me}:{line} reads {attr}" for attr, line in _foreign_private_attributes(path)]
    assert not bad, "\n".join(bad)


def _foreign_private_attributes(path: Path) -> list[tuple[str, int]]:
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") and not node.attr.startswith("__"):
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in ("self", "cls", "argparse"):
                continue
            out.append((ast.unparse(node), node.lineno))
    return out


def test_demo_has_no_import_cycle():
    graph = {}
    for path in source_files("demo"):
        graph[module_name(path)] = {m for m, names, _ in imports_of(path) if m.startswith("demo")} | \
            {f"{m}.{n}" for m, names, _ in imports_of(path) if m == "demo" for n in names}
    graph = {m: {d for d in deps if d in graph and d != m and d != "demo"} for m, deps in graph.items()}
    done, path = set(), []

    def visit(m: str) -> None:
        assert m not in path, f"import cycle: {' -> '.join(path[path.index(m):] + [m])}"
        if m in done:
            return
        path.append(m)
        for d in sorted(graph[m]):
            visit(d)
        path.pop()
        done.add(m)

    for m in sorted(graph):
        visit(m)


def test_the_cycle_check_finds_a_cycle(tmp_path, monkeypatch):
    """The checks above can fail: a planted cycle and a planted tooling import are found."""
    (tmp_path / "demo").mkdir()
    (tmp_path / "demo" / "a.py").write_text("from .b import x\n")
    (tmp_path / "demo" / "b.py").write_text("def f():\n    from .a import y\n")
    (tmp_path / "gemel").mkdir()
    (tmp_path / "gemel" / "linker.py").write_text("def f():\n    from gemel.training.train import train\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError, match="import cycle: demo.a -> demo.b -> demo.a"):
        test_demo_has_no_import_cycle()
    with pytest.raises(AssertionError, match="imports tooling"):
        test_the_runtime_imports_no_tooling(tmp_path / "gemel" / "linker.py")


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


@pytest.mark.slow
def test_linking_loads_no_tooling_at_run_time():
    mods = loaded_after("import gemel, gemel.linker, gemel.components, gemel.image.signal")
    assert not [m for m in mods if m.startswith(TOOLING)], sorted(m for m in mods if m.startswith(TOOLING))
    assert "sqlite3" not in mods


@pytest.mark.slow
def test_annotations_loads_neither_torch_nor_gemel():
    mods = loaded_after("import annotations, annotations.loop, annotations.cli")
    assert "torch" not in mods and not any(m == "gemel" or m.startswith("gemel.") for m in mods)


@pytest.mark.slow
def test_gemel_tooling_loads_no_sqlite():
    mods = loaded_after("import gemel.training.train, gemel.data.evaluate, gemel.training.ranker")
    assert "sqlite3" not in mods and "annotations" not in mods


def _gemel_modules() -> list[str]:
    import gemel

    return [m.name for m in pkgutil.walk_packages(gemel.__path__, "gemel.") if not m.name.endswith("__main__")]


@pytest.mark.parametrize("module", _gemel_modules())
def test_every_gemel_error_is_a_gemel_error(module):
    from gemel.errors import GemelError

    mod = importlib.import_module(module)
    errors = [obj for _, obj in inspect.getmembers(mod, inspect.isclass)
              if issubclass(obj, Exception) and obj.__module__ == module]
    assert all(issubclass(e, GemelError) for e in errors), [e for e in errors if not issubclass(e, GemelError)]


def test_the_cli_shows_gemel_errors_and_lets_bugs_through(monkeypatch, capsys):
    from gemel.cli import main as cli

    def bug(args):
        raise ValueError("a real bug")

    monkeypatch.setattr(cli, "run_profiles", bug)
    with pytest.raises(ValueError, match="a real bug"):
        cli.main(["profiles"])
    assert cli.main(["link", "--text", "Hopper wrote code.", "--mention", "hopper"]) == 2
    assert "does not occur" in capsys.readouterr().err

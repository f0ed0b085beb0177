"""The paper path end to end on tiny stand-ins of the released files' shapes: an official mapper checkpoint (a bare
``nn.Linear(D, k*H)`` state dict in a ``.pkl``), GEMEL-format JSON lines, the CLIP feature hdf5 file keyed by
``img_url``, and ``gemel eval`` with constrained beam search over the whole KB (``decode.candidates = 0``)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch

from gemel.cli.main import main
from gemel.config import profile_toml

URL = "https://upload.wikimedia.org/wikipedia/commons/{}.jpg"
TRAIN = [("Hopper wrote the first compiler for a programming language.", "Hopper", "Grace Hopper", "a"),
         ("Nighthawks is the best-known painting by Hopper.", "Hopper", "Edward Hopper", "b"),
         ("Apple announced a new phone on Tuesday.", "Apple", "Apple Inc.", "c"),
         ("Jordan scored 40 points for the Bulls.", "Jordan", "Michael Jordan", "d")]
TEST = [("Hopper painted lonely diners at night.", "Hopper", "Edward Hopper", "e"),
        ("Mercury is the closest planet to the Sun.", "Mercury", "Mercury (planet)", "f"),
        ("Pilgrims bathe in the Jordan every spring.", "Jordan", "Jordan River", "g"),
        ("Zorblat visited the harbour.", "Zorblat", "NIL", "h")]


pytestmark = pytest.mark.usefixtures("one_thread")


def gemel_json(path, rows) -> None:
    """JSON lines as the official data/<dataset>/{train,dev,test}.json (WikiDiverse: img_url)."""
    with path.open("w") as f:
        for text, mention, entity, img in rows:
            f.write(json.dumps({"text": text, "mention": mention, "target": entity if entity != "NIL" else "nil",
                                "golden": entity, "img_url": URL.format(img)}) + "\n")


@pytest.fixture
def paper_files(tiny_config, tiny_linker, tmp_path):
    dim, hidden, k = tiny_linker.vision.dim, tiny_linker.lm.hidden_size, tiny_config.mapper.prefix_length
    torch.manual_seed(1)
    torch.save(torch.nn.Linear(dim, k * hidden).state_dict(), tmp_path / "official_linear.pkl")
    gemel_json(tmp_path / "train.json", TRAIN)
    gemel_json(tmp_path / "test.json", TEST)
    rng = np.random.default_rng(0)
    with h5py.File(tmp_path / "clip_vit_large_patch14_1024.hdf5", "w") as h:
        for *_, img in TRAIN + TEST:
            h[URL.format(img)] = rng.standard_normal(dim).astype(np.float16)
    config = tiny_config.replace(mapper={"checkpoint": str(tmp_path / "official_linear.pkl")},
                                 decode={"mode": "beam", "candidates": 0, "num_beams": 3},
                                 demos={"kb_demos": False, "max_kb_share": 0.0, "n": 3})
    (tmp_path / "paper-tiny.toml").write_text(profile_toml(config))
    return tmp_path


def test_eval_runs_the_paper_path_end_to_end(paper_files, tiny_linker, capsys):
    d = paper_files
    report = d / "report.json"
    code = main(["eval", "--profile", str(d / "paper-tiny.toml"), "--data", str(d / "test.json"),
                 "--features", str(d / "clip_vit_large_patch14_1024.hdf5"), "--pool", str(d / "train.json"),
                 "--drop-nil", "--report", str(report), "--quiet"])
    assert code == 0, capsys.readouterr().err
    blob = json.loads(report.read_text())
    assert blob["n"] == 3  # the NIL mention is dropped, as the paper does
    assert blob["mapper"].startswith("official-")
    assert blob["decode"]["mode"] == "beam" and blob["decode"]["candidates"] == 0
    assert all(row["entity"] in tiny_linker.kb for row in blob["predictions"])
    assert all(1 <= len(row["candidates"]) <= 3 for row in blob["predictions"])
    assert "baseline" in blob


def test_prompts_use_the_precomputed_features_and_the_pool(paper_files, monkeypatch):
    import argparse

    from gemel.cli.eval import examples_for, load_for_eval
    from gemel.data.evaluate import PrecomputedFeatures

    d = paper_files
    args = argparse.Namespace(profile=str(d / "paper-tiny.toml"), set=[], mapper=None, format="auto",
                              features=str(d / "clip_vit_large_patch14_1024.hdf5"), pool=str(d / "train.json"),
                              image_dir=None, data=str(d / "test.json"), limit=None, drop_nil=True)
    linker = load_for_eval(args)
    asked = []
    real_get = PrecomputedFeatures.get
    monkeypatch.setattr(PrecomputedFeatures, "get",
                        lambda self, image: asked.append(getattr(image, "source", image)) or real_get(self, image))
    ex = examples_for(args, linker)[0]
    pred = linker.link(ex.image, ex.text, ex.mention)
    assert ex.image == URL.format("e") and asked[-1] == URL.format("e")  # the query's feature, by img_url
    assert len(asked) == 1 + len(pred.demonstrations)  # and one per demonstration
    assert {dm.source for dm in pred.demonstrations} == {"gemel"}  # demonstrations from --pool only
    assert pred.mapper.startswith("official-")


def test_a_checkpoint_of_the_wrong_shape_is_refused(paper_files, tiny_linker, capsys):
    d = paper_files
    torch.save(torch.nn.Linear(1024, 4 * 4096 // 64).state_dict(), d / "wrong.pkl")
    code = main(["eval", "--profile", str(d / "paper-tiny.toml"), "--data", str(d / "test.json"),
                 "--features", str(d / "clip_vit_large_patch14_1024.hdf5"), "--mapper", str(d / "wrong.pkl")])
    assert code == 2
    assert "does not fit the profile" in capsys.readouterr().err

"""Tests for gemel/models/features.py: the feature cache in memory (LRU) and on disk, keyed by image content."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import torch
from PIL import Image

from gemel.config import VisionConfig
from gemel.images import ImageError, image_key
from gemel.models.features import FeatureStore
from gemel.models.vision import VisionEncoder

DIM = 3


class CountingTower(torch.nn.Module):
    """A stand-in image tower: the mean colour of the image, counting how many images it has seen."""

    def __init__(self) -> None:
        super().__init__()
        self.images = 0
        self.barrier: threading.Barrier | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        if self.barrier is not None:
            self.barrier.wait(timeout=10)
        return x.mean(dim=(2, 3))  # (B, 3)


@pytest.fixture
def encoder() -> VisionEncoder:
    return VisionEncoder(CountingTower(), VisionConfig(kind="timm", name="counting", weights="package:x/w.pth",
                                                       image_size=8), dim=DIM)


def calls(enc: VisionEncoder) -> int:
    return enc.model.images


def colour(i: int) -> Image.Image:
    return Image.new("RGB", (10, 12), (i * 20 % 256, 100, 200))


@pytest.fixture
def png(tmp_path):
    path = tmp_path / "a.png"
    colour(1).save(path)
    return path


def test_feature_is_the_encoders_pooled_vector(encoder, png, tmp_path):
    store = FeatureStore(encoder, folder=tmp_path / "f")
    feat = store.get(png)
    assert feat.shape == (DIM,) and feat.dtype == torch.float32
    assert torch.allclose(feat, encoder.encode([Image.open(png)])[0])


def test_none_has_no_feature(encoder, tmp_path):
    store = FeatureStore(encoder, folder=tmp_path)
    assert store.get(None) is None
    store.forget(None)
    assert calls(encoder) == 0


def test_memory_cache_calls_the_encoder_once_per_image(encoder, png):
    store = FeatureStore(encoder, disk=False)
    first = store.get(png)
    for again in (png, str(png), png.read_bytes(), png):  # one file, one content key
        assert torch.equal(store.get(again), first)
    assert calls(encoder) == 1
    store.get(colour(2))
    store.get(colour(2))
    assert calls(encoder) == 2


def test_disk_cache_is_shared_by_a_new_store_on_the_same_folder(encoder, png, tmp_path):
    folder = tmp_path / "features"
    first = FeatureStore(encoder, folder=folder).get(png)
    assert (folder / f"{image_key(png)}.npy").exists()
    assert list(folder.glob("*.tmp.npy")) == []  # written atomically
    assert calls(encoder) == 1
    again = FeatureStore(encoder, folder=folder).get(png)
    assert calls(encoder) == 1
    assert torch.equal(again, first)


def test_without_disk_nothing_is_written(encoder, png, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMEL_CACHE", str(tmp_path / "cache"))
    store = FeatureStore(encoder, disk=False)
    assert store.folder is None
    store.get(png)
    assert not (tmp_path / "cache").exists()
    FeatureStore(encoder, disk=False).get(png)
    assert calls(encoder) == 2


def test_default_folder_is_under_the_cache_and_named_by_encoder(encoder, tmp_path, monkeypatch):
    monkeypatch.setenv("GEMEL_CACHE", str(tmp_path))
    store = FeatureStore(encoder)
    assert store.folder.parent == tmp_path / "features"
    assert store.folder.name == "timm-counting-package_x_w.pth"  # no ':' or '/' in a folder name
    other = VisionEncoder(CountingTower(), VisionConfig(kind="timm", name="other", image_size=8), dim=DIM)
    assert FeatureStore(other).folder != store.folder  # features of two encoders never mix


def test_memory_is_an_lru_of_bounded_size(encoder):
    store = FeatureStore(encoder, disk=False, memory_items=2)
    a, b, c = colour(1), colour(2), colour(3)
    store.get(a)
    store.get(b)
    store.get(a)  # a is now the most recently used
    store.get(c)  # evicts b
    assert len(store._memory) == 2
    assert calls(encoder) == 3
    store.get(a)
    store.get(c)
    assert calls(encoder) == 3
    store.get(b)
    assert calls(encoder) == 4


def test_a_long_batch_does_not_grow_memory(encoder):
    store = FeatureStore(encoder, disk=False, memory_items=5)
    for i in range(30):
        store.get(colour(i))
    assert len(store._memory) == 5


def test_evicted_features_come_back_from_disk(encoder, tmp_path):
    store = FeatureStore(encoder, folder=tmp_path, memory_items=1)
    a, b = colour(1), colour(2)
    fa = store.get(a)
    store.get(b)
    assert torch.equal(store.get(a), fa)
    assert calls(encoder) == 2


def test_forget_drops_memory_and_disk(encoder, png, tmp_path):
    store = FeatureStore(encoder, folder=tmp_path)
    store.get(png)
    store.forget(png)
    assert not (tmp_path / f"{image_key(png)}.npy").exists()
    store.get(png)
    assert calls(encoder) == 2  # a cold encode again
    store.forget(colour(9))  # never cached: nothing to do


def test_a_cached_file_of_another_size_or_damaged_is_recomputed(encoder, png, tmp_path):
    path = tmp_path / f"{image_key(png)}.npy"
    np.save(path, np.zeros(DIM + 1, dtype=np.float32))  # e.g. left by an encoder of another width
    feat = FeatureStore(encoder, folder=tmp_path).get(png)
    assert calls(encoder) == 1 and feat.shape == (DIM,)
    path.write_bytes(b"\x93NUMPY garbage")
    assert torch.equal(FeatureStore(encoder, folder=tmp_path).get(png), feat)
    assert calls(encoder) == 2
    assert np.load(path).shape == (DIM,)  # and rewritten


def test_bad_images_raise_image_error_and_are_not_cached(encoder, tmp_path):
    store = FeatureStore(encoder, folder=tmp_path / "f")
    text = tmp_path / "notes.png"
    text.write_text("not a picture")
    for bad in (text, tmp_path / "missing.png", tmp_path):
        with pytest.raises(ImageError):
            store.get(bad)
    assert store._memory == {}
    assert calls(encoder) == 0


def test_concurrent_first_encodes_of_one_image_all_succeed(encoder, tmp_path):
    """Threads (a web UI) that encode the same new image at once must not trip over each other's temp file."""
    n = 6
    encoder.model.barrier = threading.Barrier(n)  # all encodes finish together, then all write
    image = colour(4)
    stores = [FeatureStore(encoder, folder=tmp_path) for _ in range(n)]
    errors: list[BaseException] = []

    def work(store: FeatureStore) -> None:
        try:
            store.get(image)
        except BaseException as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    assert list(tmp_path.glob("*.npy")) == [tmp_path / f"{image_key(image)}.npy"]

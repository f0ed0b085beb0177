"""Image features computed once: an in-memory and on-disk cache keyed by image content and encoder.

Demonstration images recur in every prompt and every training epoch; the frozen encoder gives the same feature
each time, so it is computed once per (image sha256, encoder) and kept in ``<cache>/features/<encoder>/``.
"""

from __future__ import annotations

import os
import re
import threading
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch

from gemel.images import ImageInput, image_key, load_image
from gemel.models.vision import VisionEncoder
from gemel.sources import cache_dir


# encoder kind -> a suffix of its cache folder, changed whenever its preprocessing changes (open_clip's own
# transform since the hub profile: features cached by the hand-written resize before are not reused)
PREPROCESSING = {"open_clip": "-openclip-transform"}


class FeatureStore:
    """``get(image) -> (D,)`` float32 tensor of the frozen encoder's pooled feature."""

    def __init__(self, encoder: VisionEncoder, folder: Path | None = None, disk: bool = True,
                 memory_items: int = 4096) -> None:
        self.encoder = encoder
        self.memory_items = memory_items  # LRU bound: a long batch must not grow memory without limit
        c = encoder.config
        version = PREPROCESSING.get(c.kind, "")  # a change of preprocessing makes earlier features stale
        tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", f"{c.kind}-{c.name}-{c.weights}{version}")
        self.folder = (Path(folder) if folder else cache_dir("features", tag)) if disk else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)  # a given folder may not exist yet
        self._memory: OrderedDict[str, torch.Tensor] = OrderedDict()

    def get(self, image: ImageInput) -> torch.Tensor | None:
        key = image_key(image)
        if key is None:
            return None
        if key in self._memory:
            self._memory.move_to_end(key)
            return self._memory[key]
        feature = self._read(key)
        if feature is None:
            feature = self.encoder.encode([load_image(image)])[0]  # (D,)
            self._write(key, feature)
        self._memory[key] = feature
        if len(self._memory) > self.memory_items:
            self._memory.popitem(last=False)
        return feature

    def forget(self, image: ImageInput) -> None:
        """Drop an image's cached feature (memory and disk): benchmarks time a cold encode this way."""
        key = image_key(image)
        if key is None:
            return
        self._memory.pop(key, None)
        path = self._path(key)
        if path is not None:
            path.unlink(missing_ok=True)

    def _path(self, key: str) -> Path | None:
        return None if self.folder is None else self.folder / f"{key}.npy"

    def _read(self, key: str) -> torch.Tensor | None:
        path = self._path(key)
        if path is None or not path.exists():
            return None
        try:
            arr = np.load(path)
        except (OSError, ValueError, EOFError):  # a damaged cache file is recomputed, not fatal
            return None
        return torch.from_numpy(arr) if arr.shape == (self.encoder.dim,) else None

    def _write(self, key: str, feature: torch.Tensor) -> None:
        path = self._path(key)
        if path is None:
            return
        # a temp name per writer: two threads (or processes) encoding the same image must not share one
        tmp = path.with_name(f"{path.stem}.{os.getpid()}-{threading.get_ident()}.tmp.npy")
        np.save(tmp, feature.numpy())
        tmp.replace(path)

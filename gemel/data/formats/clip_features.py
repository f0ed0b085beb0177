"""GEMEL's precomputed CLIP image features: `read_clip_features` and the mapping it returns, `ClipFeatures`.

``clip_vit_large_patch14_1024.hdf5`` of the GEMEL data is indexed by the ``img_url`` / ``img_name`` of the
records of `gemel.data.formats.gemel_json` (``h5py.File(path)[key][()]``, one CLIP ViT-L/14 vector of 1024
floats). ``h5py`` is imported only when a file is opened.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from gemel.data.formats.errors import DatasetError, DatasetFormatError
from gemel.data.formats.files import existing_file


class ClipFeatures(Mapping[str, np.ndarray]):
    """Read-only view of GEMEL's ``clip_vit_large_patch14_1024.hdf5``: image key -> float32 vector ``(dim,)``.

    Keys are the records' ``img_url`` / ``img_name``. HDF5 treats ``/`` as a group separator, so a URL key is
    stored as nested groups; looking it up with the original string works, and iteration yields HDF5 paths
    (repeated slashes collapsed). Vectors are read on demand; close the file with `close` or a ``with`` block.
    """

    def __init__(self, path: str | Path, dim: int = 1024) -> None:
        import h5py

        if dim < 1:
            raise DatasetError(f"dim={dim} must be >= 1 (GEMEL's CLIP ViT-L/14 features have 1024)")
        self.path, self.dim = existing_file(path), dim
        try:
            self._file = h5py.File(self.path, "r")
        except OSError as e:
            raise DatasetFormatError(self.path, None, f"not an HDF5 file ({e}); expected "
                                                      "clip_vit_large_patch14_1024.hdf5 from the GEMEL data") from e
        self._keys: list[str] | None = None

    def _dataset(self, key: str) -> Any:
        import h5py

        obj = self._file.get(key) if isinstance(key, str) else None
        return obj if isinstance(obj, h5py.Dataset) else None

    def __getitem__(self, key: str) -> np.ndarray:
        dataset = self._dataset(key)
        if dataset is None:
            raise KeyError(f"{key!r} is not in {self.path}; keys are the records' img_url / img_name")
        vector = np.asarray(dataset[()], dtype=np.float32)
        if vector.shape == (1, self.dim):
            vector = vector[0]
        if vector.shape != (self.dim,):
            raise DatasetFormatError(self.path, key, f"feature has shape {vector.shape}, expected ({self.dim},); "
                                                     "pass dim= if the file holds another encoder's features")
        return vector

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and self._dataset(key) is not None

    def __iter__(self) -> Iterator[str]:
        if self._keys is None:
            import h5py

            names: list[str] = []
            self._file.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            self._keys = names
        return iter(self._keys)

    def __len__(self) -> int:
        return sum(1 for _ in self)

    def close(self) -> None:
        self._file.close()

    def __enter__(self) -> ClipFeatures:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def read_clip_features(h5_path: str | Path, dim: int = 1024) -> ClipFeatures:
    """GEMEL's precomputed CLIP image features: a read-only mapping {image key: np.ndarray (dim,)}."""
    return ClipFeatures(h5_path, dim)

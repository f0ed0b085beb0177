"""What the hub benches and tests share: an open_clip model saved as the Hugging Face Hub's cache holds it.

``save_to_hub_cache`` writes a random-weight open_clip model (the real architecture, the same compute as the
released weights) into a hub cache folder in huggingface_hub's own layout (``models--org--name/blobs/<sha256>``,
``snapshots/<revision>/`` linking to them, ``refs/main``), with ``open_clip_config.json`` (model_cfg +
preprocess_cfg) and ``open_clip_model.safetensors``, as a hub repository of open_clip holds them. With
``HF_HUB_CACHE`` pointing at the folder and ``HF_HUB_OFFLINE=1``, ``open_clip.create_model_and_transforms(
"hf-hub:org/name")`` and the ``hub`` profile load it through their real code path. A helper, not a bench.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

OPENAI_MEAN = [0.48145466, 0.4578275, 0.40821073]  # open_clip's OPENAI_DATASET_MEAN (LAION's models use it too)
OPENAI_STD = [0.26862954, 0.26130258, 0.27577711]


def repo_folder(cache: Path, repo: str) -> Path:
    """``<cache>/models--org--name``: where huggingface_hub keeps the repository ``org/name``."""
    return Path(cache) / ("models--" + repo.replace("/", "--"))


def save_to_hub_cache(cache: Path, repo: str, model_cfg: dict, image_size: int, arch: str = "", seed: int = 0) -> Path:
    """A random-weight open_clip model (``open_clip.create_model(arch)``, else ``open_clip.CLIP(**model_cfg)``)
    saved into ``cache`` as the repository ``repo``; built once (an existing one is kept; seeded, so a rebuild
    would be the same). Returns the repository's folder."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder = repo_folder(cache, repo)
    if (folder / "refs" / "main").exists():
        return folder
    work = folder.with_name(folder.name + f".partial-{os.getpid()}")
    shutil.rmtree(work, ignore_errors=True)
    (work / "blobs").mkdir(parents=True)
    torch.manual_seed(seed)
    model = open_clip.create_model(arch) if arch else open_clip.CLIP(**model_cfg)  # random weights
    weights = work / "weights.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(weights))
    preprocess = {"mean": OPENAI_MEAN, "std": OPENAI_STD, "interpolation": "bicubic", "resize_mode": "shortest",
                  "size": image_size}
    config = json.dumps({"model_cfg": model_cfg, "preprocess_cfg": preprocess}).encode()
    _snapshot(work, repo, {"open_clip_config.json": config, "open_clip_model.safetensors": weights.read_bytes()})
    weights.unlink()
    try:
        work.rename(folder)
    except OSError:  # another process finished first
        shutil.rmtree(work, ignore_errors=True)
    return folder


def _snapshot(work: Path, repo: str, files: dict[str, bytes]) -> None:
    """The files as content-named blobs, a snapshot of links to them, and ``refs/main`` naming the snapshot."""
    revision = hashlib.sha1(repo.encode()).hexdigest()
    snapshot = work / "snapshots" / revision
    snapshot.mkdir(parents=True)
    for name, data in files.items():
        blob = hashlib.sha256(data).hexdigest()
        (work / "blobs" / blob).write_bytes(data)
        (snapshot / name).symlink_to(Path("..", "..", "blobs", blob))
    (work / "refs").mkdir()
    (work / "refs" / "main").write_text(revision)


def alias(cache: Path, repo: str, as_repo: str, into: Path) -> Path:
    """A hub cache ``into`` holding ``repo``'s files (from ``cache``) as the repository ``as_repo`` (hard links, no
    copy): a random model under a released model's name, for the profile that names it. Returns ``into``."""
    dst = repo_folder(into, as_repo)
    if not dst.exists():
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copytree(repo_folder(cache, repo), dst, symlinks=True, copy_function=os.link)
    return Path(into)

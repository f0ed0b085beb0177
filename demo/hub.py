"""Optional periodic push of the exported corrections to a Hugging Face dataset repository.

Off by default. When both ``GEMEL_HUB_DATASET`` (``owner/name``) and ``HF_TOKEN`` are set, a
`huggingface_hub.CommitScheduler` (the "scheduled uploads" recipe of the huggingface_hub guide: subclass it
and override ``push_to_hub`` to prepare the folder first) exports the store's current decisions as JSONL,
with their images, into a local folder every ``GEMEL_HUB_EVERY`` minutes (default 10) and commits what
changed. The live SQLite file is never pushed: a copy of a database in WAL mode taken mid-write can be
corrupt, and it would hold every superseded decision too.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

_REPO_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
EXPORT_NAME = "corrections.jsonl"


@dataclass(frozen=True)
class HubPushConfig:
    repo_id: str  # dataset repository, "owner/name"
    token: str  # a write token (HF_TOKEN, a Space secret)
    every_minutes: float = 10.0  # time between pushes
    private: bool = True  # create the repository private when it does not exist

    def __post_init__(self) -> None:
        if not _REPO_ID.match(self.repo_id):
            raise ValueError(f"GEMEL_HUB_DATASET={self.repo_id!r} is not a repository id; write 'owner/name'")
        if not self.token.strip():
            raise ValueError("HF_TOKEN is empty; set a write token as a Space secret")
        if not self.every_minutes >= 1:
            raise ValueError(f"GEMEL_HUB_EVERY={self.every_minutes!r} must be >= 1 minute")

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "HubPushConfig | None":
        """The push settings when ``GEMEL_HUB_DATASET`` and ``HF_TOKEN`` are both set, else None (off)."""
        env = os.environ if env is None else env
        repo = (env.get("GEMEL_HUB_DATASET") or "").strip()
        token = (env.get("HF_TOKEN") or "").strip()
        if not repo:
            return None
        if not token:
            log.warning("GEMEL_HUB_DATASET=%s is set but HF_TOKEN is not: corrections are not pushed", repo)
            return None
        every_text = env.get("GEMEL_HUB_EVERY") or "10"
        try:
            every = float(every_text)
        except ValueError:
            raise ValueError(f"GEMEL_HUB_EVERY={every_text!r} is not a number of minutes") from None
        return cls(repo, token, every)


def start_hub_push(store: Any, config: HubPushConfig, folder: str | Path) -> Any:
    """Start the scheduler pushing ``folder`` (where the store is exported) to ``config.repo_id``."""
    from huggingface_hub import CommitScheduler

    from annotations import export_jsonl

    class ExportingScheduler(CommitScheduler):
        def push_to_hub(self) -> Any:
            with self.lock:
                n = export_jsonl(store, Path(self.folder_path) / EXPORT_NAME)
            log.info("exported %d decisions for the push to %s", n, config.repo_id)
            return super().push_to_hub()

    Path(folder).mkdir(parents=True, exist_ok=True)
    return ExportingScheduler(repo_id=config.repo_id, repo_type="dataset", folder_path=folder,
                              every=config.every_minutes, token=config.token, private=config.private)

"""Settings of the demo: the `AppConfig` dataclass, ``--auth`` parsing and the keyword arguments of
``Blocks.launch`` (server address, auth, upload cap, allowed paths, the keyboard script).

The environment is read here and nowhere else: ``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` (Gradio's
own names, also what Hugging Face Spaces sets), ``GEMEL_AUTH`` (``user:pass[,user2:pass2]``) to guard a
public deployment. ``GEMEL_DB`` is read by `annotations.default_db_path`, the hub push settings by
`demo.hub`.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import StudioError
from .render import CSS

ROOT = Path(__file__).resolve().parent.parent
ASSETS = ROOT / "assets"
KEYBOARD_JS = Path(__file__).with_name("keyboard.js")


class AppConfigError(StudioError):
    """A demo setting is invalid; the message names it and the fix."""


def _default_examples() -> tuple[str, ...]:
    return (str(ROOT / "gemel" / "assets" / "seed" / "examples.jsonl"), str(ASSETS / "eval" / "dev.jsonl"))


@dataclass(frozen=True)
class AppConfig:
    title: str = "GEMEL Studio"  # browser tab title and page heading
    concurrency_limit: int = 1  # model calls (link, correct, enqueue) running at once; the linker is shared
    max_queue_size: int = 64  # requests waiting in Gradio's queue before new ones are refused
    max_batch_items: int = 500  # items one review-batch upload may add (each is linked on enqueue)
    max_upload_mb: int = 20  # per uploaded file; images are also pixel-capped by gemel.images.load_image
    examples: tuple[str, ...] = field(default_factory=_default_examples)  # JSONL files for the example gallery
    allow_server_paths: bool = False  # batch JSONL may name absolute image paths on this server (local use)
    work_dir: str | None = None  # exports and plots; None: a fresh temporary folder
    candidates_shown: int = 9  # candidates listed (digits 1-9 pick them)
    thumbnails: bool = True  # inline photo thumbnails of demonstrations

    def __post_init__(self) -> None:
        for name in ("concurrency_limit", "max_queue_size", "max_batch_items", "max_upload_mb"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise AppConfigError(f"{name}={value!r} must be an integer >= 1")
        if not 1 <= self.candidates_shown <= 9:
            raise AppConfigError(f"candidates_shown={self.candidates_shown!r} must be within 1..9 "
                                  "(one keyboard digit per candidate)")
        if not self.title.strip():
            raise AppConfigError("title is empty; give the page a name, e.g. 'GEMEL Studio'")
        missing = [p for p in self.examples if not Path(p).is_file()]
        if missing:
            raise AppConfigError(f"example file {missing[0]!r} does not exist; pass examples=() for none")


def parse_auth(spec: str | None) -> list[tuple[str, str]] | None:
    """``"alice:pw1,bob:pw2"`` -> ``[("alice", "pw1"), ("bob", "pw2")]``; None or "" -> None (no login).
    A password may contain ':' (the first ':' separates); a user may not contain ','."""
    if spec is None or not spec.strip():
        return None
    pairs = []
    for part in spec.split(","):
        user, sep, password = part.strip().partition(":")
        if not sep or not user.strip() or not password:
            raise AppConfigError(f"auth entry {part.strip()!r} is not 'user:password'; write e.g. "
                                  "--auth alice:secret or GEMEL_AUTH='alice:secret,bob:other'")
        pairs.append((user.strip(), password))
    return pairs


def server_address(env: Mapping[str, str] | None = None) -> tuple[str | None, int | None]:
    """(``GRADIO_SERVER_NAME``, ``GRADIO_SERVER_PORT``) from the environment; None where unset."""
    env = os.environ if env is None else env
    name = env.get("GRADIO_SERVER_NAME") or None
    port_text = env.get("GRADIO_SERVER_PORT") or None
    if port_text is None:
        return name, None
    try:
        port = int(port_text)
    except ValueError:
        raise AppConfigError(f"GRADIO_SERVER_PORT={port_text!r} is not a port number; e.g. 7860") from None
    if not 1 <= port <= 65535:
        raise AppConfigError(f"GRADIO_SERVER_PORT={port} must be within 1..65535")
    return name, port


def keyboard_head() -> str:
    """The ``<script>`` of the keyboard shortcuts, for ``launch(head=...)``."""
    return "<script>\n" + KEYBOARD_JS.read_text(encoding="utf-8") + "\n</script>"


def launch_kwargs(config: AppConfig, auth: list[tuple[str, str]] | None = None,
                  env: Mapping[str, str] | None = None, extra_paths: tuple[str, ...] = ()) -> dict[str, Any]:
    """Keyword arguments for ``Blocks.launch``: address, auth, upload cap, the folders the app may serve
    (the shipped assets and ``extra_paths``, e.g. the store's images) and the page head / CSS."""
    name, port = server_address(env)
    allowed = [str(ASSETS), *extra_paths] + ([config.work_dir] if config.work_dir else [])
    return {
        "server_name": name,
        "server_port": port,
        "auth": auth,
        "auth_message": "GEMEL Studio: log in with the user name and password you were given." if auth else None,
        "max_file_size": config.max_upload_mb * 1024 * 1024,
        "allowed_paths": allowed,
        "head": keyboard_head(),
        "css": CSS,
        "show_error": False,  # only gr.Error sentences reach the page, never an exception text
    }


def oauth_enabled(env: Mapping[str, str] | None = None) -> bool:
    """True on a Hugging Face Space with ``hf_oauth: true`` (the Space then sets ``OAUTH_CLIENT_ID``)."""
    env = os.environ if env is None else env
    return bool((env.get("OAUTH_CLIENT_ID") or "").strip())

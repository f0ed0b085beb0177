"""The image input of the Link tab and the API: `UploadedImage`, a ``gr.Image`` that hands the upload over unopened.

``gr.Image`` opens the file with PIL while preprocessing, before any handler runs, so a non-image, an empty file or
a decompression bomb failed there with Gradio's generic "the upstream app has raised an exception" and a traceback
in the log. This component passes an `demo.handlers.Upload` (server path + upload name) instead, and the handlers
check the file as the CLI does (`gemel.images.load_image`), naming it by its upload name. The page draws the same
``image`` widget. (Gradio writes a ``.pyi`` stub beside a module that defines a component: hence this module of
its own, and ``demo/uploads.pyi`` in ``.gitignore``.)
"""

from __future__ import annotations

import os
from typing import Any

import gradio as gr
from gradio import processing_utils

from .handlers import Upload


class UploadedImage(gr.Image):
    """``gr.Image`` whose value reaches the handler untouched, as an `Upload`."""

    def get_block_name(self) -> str:
        return "image"  # the front end's Image component

    def preprocess(self, payload: Any) -> Upload | None:  # type: ignore[override]
        if payload is None:
            return None
        if payload.url and payload.url.startswith("data:"):  # an image sent inline (base64), e.g. pasted
            path = processing_utils.save_base64_to_cache(payload.url, self.GRADIO_CACHE, payload.orig_name)
            return Upload(path, payload.orig_name or "the pasted image")
        if payload.path is None:
            return None
        return Upload(str(payload.path), payload.orig_name or os.path.basename(payload.path))

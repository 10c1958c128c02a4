"""gato.language: prompt layouts, packed examples and decoding with and without the KV cache."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from gato.images import image_patches
from gato.language import (
    PromptTooLongError,
    ask,
    caption,
    caption_prompt,
    generate_ids,
    generate_text,
    pack_examples,
    text_prompt,
    vqa_prompt,
)


def _image(seed: int, size: int = 8) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def test_prompt_layouts(tiny_policy):
    vocab = tiny_policy().vocab
    patches, rowcol = image_patches(_image(0), 8, 4)
    cap = caption_prompt(vocab, patches, rowcol)
    assert cap.tokens.tolist() == [vocab.pad] * 4 + [vocab.separator]
    assert cap.is_patch.tolist() == [True] * 4 + [False] and not cap.targets.any()
    q = vocab.tokenizer.encode("what color is it?")
    vqa = vqa_prompt(vocab, patches, rowcol, "what color is it?")
    assert vqa.tokens.tolist() == [vocab.pad] * 4 + q + [vocab.separator]
    np.testing.assert_array_equal(vqa.patches, patches)
    assert text_prompt(vocab, "go to").tokens.tolist() == vocab.tokenizer.encode("go to")
    assert text_prompt(vocab, "").tokens.tolist() == [vocab.tokenizer.eos_id]
    answered = vqa.answered([5, 6], vocab.tokenizer.eos_id)
    assert answered.tokens.tolist()[len(vqa):] == [5, 6, vocab.tokenizer.eos_id]
    assert answered.targets.nonzero()[0].tolist() == [len(vqa), len(vqa) + 1, len(vqa) + 2]


def test_pack_examples_restarts_positions_and_segments(tiny_policy):
    vocab = tiny_policy().vocab
    patches, rowcol = image_patches(_image(0), 8, 4)
    a = caption_prompt(vocab, patches, rowcol).answered([7], vocab.tokenizer.eos_id)  # 7 tokens
    b = text_prompt(vocab, "go")
    batch = pack_examples([[a, b], [b]], 12, vocab.pad)
    n = len(b)
    assert batch.in_step_pos[0, :7 + n].tolist() == list(range(7)) + list(range(n))
    assert batch.segment_ids[0].tolist() == [0] * 7 + [1] * n + [2] * (12 - 7 - n)
    assert batch.segment_ids[1].tolist() == [0] * n + [1] * (12 - n)
    assert batch.targets.sum() == 2 and batch.patch_mask.sum() == 4 and batch.patches.shape == (4, 3, 4, 4)
    assert (batch.tokens[1, n:] == vocab.pad).all()
    with pytest.raises(ValueError, match="do not fit"):
        pack_examples([[a, a]], 12, vocab.pad)


def _prompts(vocab):
    prompts = [text_prompt(vocab, t) for t in ("go to the", "pick up a red", "open")]
    for seed in range(2):
        patches, rowcol = image_patches(_image(seed), 8, 4)
        prompts.append(caption_prompt(vocab, patches, rowcol))
        prompts.append(vqa_prompt(vocab, patches, rowcol, ["what is it?", "color?"][seed]))
    return prompts


@pytest.mark.slow
@pytest.mark.parametrize("temperature", [0.0, 1.5])
def test_cache_and_no_cache_agree(tiny_policy, temperature):
    policy = tiny_policy(seed=3)
    torch.nn.init.normal_(policy.embedding.tokens.weight, 0.0, 0.5)  # sharper, more varied choices
    prompts = _prompts(policy.vocab)
    runs = []
    for use_cache in (True, False):
        generator = torch.Generator().manual_seed(11)
        runs.append(generate_ids(policy, prompts, 8, temperature=temperature, generator=generator,
                                 use_cache=use_cache))
    assert runs[0] == runs[1]
    assert all(0 <= t < policy.vocab.text_tokens and t != policy.vocab.tokenizer.pad_id for r in runs[0] for t in r)
    if temperature == 0:  # decoding in groups and batches gives what each prompt gets alone
        alone = [generate_ids(policy, [p], 8)[0] for p in prompts]
        assert runs[0] == alone == generate_ids(policy, prompts, 8, batch_size=2)
        assert len({tuple(r) for r in runs[0]}) > 1


def test_stops_at_eos_and_at_max_new_tokens(tiny_policy):
    policy = tiny_policy()
    vocab = policy.vocab
    direction = torch.randn(policy.embed_dim)
    with torch.no_grad():  # every hidden state becomes `direction`; the row that matches it most wins
        policy.transformer.ln_f.weight.zero_()
        policy.transformer.ln_f.bias.copy_(direction)
        policy.embedding.tokens.weight[vocab.tokenizer.eos_id] = 10 * direction
    assert generate_ids(policy, _prompts(vocab), 5) == [[]] * len(_prompts(vocab))
    assert generate_text(policy, "go to", 5) == ""
    word = vocab.tokenizer.encode(" red")[0]
    with torch.no_grad():
        policy.embedding.tokens.weight[word] = 20 * direction
    assert generate_ids(policy, [text_prompt(vocab, "go")], 5) == [[word] * 5]
    assert generate_text(policy, "go", 3) == " red red red"


def test_prompt_too_long_says_what_fits(tiny_policy):
    policy = tiny_policy()  # context 128
    with pytest.raises(PromptTooLongError, match="takes 120 tokens.*at most 118 tokens"):
        generate_ids(policy, [text_prompt(policy.vocab, [1] * 120)], 10)
    assert generate_ids(policy, [text_prompt(policy.vocab, [1] * 118)], 10)  # fits exactly
    with pytest.raises(PromptTooLongError):
        caption(policy, _image(0, 32), image_size=64)  # 256 patches


def test_caption_and_ask_take_any_image_and_keep_the_mode(tiny_policy):
    policy = tiny_policy().train()
    gray = Image.new("L", (13, 7), 90)
    text = caption(policy, gray, image_size=16, max_new_tokens=4)
    assert isinstance(text, str) and policy.training
    assert ask(policy, np.zeros((16, 16, 3), np.uint8), "what shape?", image_size=16, max_new_tokens=3) == ask(
        policy, np.zeros((16, 16, 3), np.uint8), "what shape?", image_size=16, max_new_tokens=3, use_cache=False)
    generator = torch.Generator().manual_seed(0)
    sampled = generate_text(policy, "go", 6, temperature=1.0, generator=generator)
    assert sampled == generate_text(policy, "go", 6, temperature=1.0, generator=torch.Generator().manual_seed(0))

"""Text with a GatoPolicy: prompt streams, training examples and decoding with the KV cache.

One example is one timestep: ``in_step_pos`` counts 0, 1, 2, ... over it, in training and in
generation alike. The layouts (issue 17's conventions):

=========  =============================================  ===========================
kind       prompt                                         predicted (training targets)
=========  =============================================  ===========================
text       text tokens                                    the continuation
caption    image patches, separator                       caption tokens, eos
vqa        image patches, question tokens, separator      answer tokens, eos
=========  =============================================  ===========================

Image patches sit at positions with id ``vocab.pad`` and ``patch_mask`` True (see
:mod:`gato.images`). The separator ends the observation, so the text FiLM conditions the patches
on the question and never on the caption or answer.

Decoding (:func:`generate_ids`) is greedy, or sampled at a ``temperature`` with a
``torch.Generator``; it picks only text ids (``[0, vocab.text_tokens)``, the tokenizer's pad id
excepted) and stops at the tokenizer's eos or after ``max_new_tokens``. Prompts of one length are
decoded together through one KV cache (the cache has no padding mask, so prompts of different
lengths go in different groups); ``use_cache=False`` re-runs the whole sequence at every token.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import torch

from gato.batch import Batch, Run, pack_runs
from gato.images import IMAGE_SIZE, batch_patches


class PromptTooLongError(ValueError):
    """A prompt that leaves the context no room for the tokens to generate."""


@dataclass(frozen=True)
class Example:
    """One timestep of text and image tokens: a prompt, or a training example when ``targets`` has Trues.

    tokens, is_patch, targets: (L,) int64, bool, bool; patches (n, C, P, P) float32 and rowcol (n, 2)
    int64 for the n True places of ``is_patch``, in order.
    """

    tokens: np.ndarray
    is_patch: np.ndarray
    targets: np.ndarray
    patches: np.ndarray
    rowcol: np.ndarray

    def __len__(self) -> int:
        return len(self.tokens)

    def run(self) -> Run:
        """This example as a run of :func:`gato.batch.pack_runs` (in_step_pos 0, 1, ...)."""
        return Run(self.tokens, np.arange(len(self.tokens)), self.is_patch, self.targets, self.patches, self.rowcol)

    def answered(self, answer_ids: Sequence[int], eos_id: int) -> Example:
        """This prompt followed by ``answer_ids`` and ``eos_id``, which are the targets (and nothing else is)."""
        tail = np.asarray([*answer_ids, eos_id], dtype=np.int64)
        return replace(self, tokens=np.concatenate([self.tokens, tail]),
                       is_patch=np.concatenate([self.is_patch, np.zeros(len(tail), bool)]),
                       targets=np.concatenate([np.zeros(len(self.tokens), bool), np.ones(len(tail), bool)]))


def _text_ids(vocab, text: str | Sequence[int]) -> np.ndarray:
    return np.asarray(vocab.tokenizer.encode(text) if isinstance(text, str) else list(text), dtype=np.int64)


def _example(vocab, patches: np.ndarray | None, rowcol: np.ndarray | None, ids: np.ndarray,
             separator: bool) -> Example:
    n = 0 if patches is None else len(patches)
    tail = [vocab.separator] if separator else []
    tokens = np.concatenate([np.full(n, vocab.pad, np.int64), ids, np.asarray(tail, np.int64)])
    is_patch = np.zeros(len(tokens), bool)
    is_patch[:n] = True
    if patches is None:
        patches, rowcol = np.zeros((0, 1, 1, 1), np.float32), np.zeros((0, 2), np.int64)
    return Example(tokens, is_patch, np.zeros(len(tokens), bool), np.asarray(patches, np.float32),
                   np.asarray(rowcol, np.int64))


def text_prompt(vocab, text: str | Sequence[int]) -> Example:
    """The prompt of a text continuation: its tokens (a string or ids); an empty one is ``[eos]``, the
    token a document follows in the training stream."""
    ids = _text_ids(vocab, text)
    return _example(vocab, None, None, ids if len(ids) else np.asarray([vocab.tokenizer.eos_id]), False)


def caption_prompt(vocab, patches: np.ndarray, rowcol: np.ndarray) -> Example:
    """[image patches, separator]: what a caption follows. patches (N, C, P, P), rowcol (N, 2)
    (:func:`gato.images.image_patches`)."""
    return _example(vocab, patches, rowcol, np.zeros(0, np.int64), True)


def vqa_prompt(vocab, patches: np.ndarray, rowcol: np.ndarray, question: str | Sequence[int]) -> Example:
    """[image patches, question tokens, separator]: what an answer follows (question: a string or ids)."""
    return _example(vocab, patches, rowcol, _text_ids(vocab, question), True)


def pack_examples(rows: list[list[Example]], length: int, pad_id: int) -> Batch:
    """A Batch of ``len(rows)`` rows of ``length`` tokens, each holding its examples back to back
    (in_step_pos restarting at 0 at each), right-padded with ``pad_id``: :func:`gato.batch.pack_runs`, with
    an example a unit. When a row holds several, ``segment_ids`` keeps each example's attention to itself."""
    return pack_runs([[[ex.run()] for ex in row] for row in rows], length, pad_id)


def prompt_stream(prompts: list[Example], pad_id: int, device="cpu") -> dict:
    """The stream dict (no targets) of prompts that all have one length, one per row."""
    lengths = {len(p) for p in prompts}
    if len(lengths) != 1:
        raise ValueError(f"prompts decoded together must have one length, got {sorted(lengths)}")
    stream = pack_examples([[p] for p in prompts], lengths.pop(), pad_id).to_torch(device)
    stream.pop("targets")
    return stream


def check_fits(prompt_len: int, max_new_tokens: int, context_len: int) -> None:
    """Raise :class:`PromptTooLongError` unless a prompt of ``prompt_len`` tokens and ``max_new_tokens`` more fit
    ``context_len`` (the tokens a training example would take: prompt, answer and eos)."""
    if prompt_len + max_new_tokens > context_len:
        raise PromptTooLongError(
            f"the prompt takes {prompt_len} tokens; with room for max_new_tokens={max_new_tokens} more, the policy's "
            f"context_len {context_len} fits prompts of at most {context_len - max_new_tokens} tokens: shorten the "
            "prompt (for images: fewer patches) or pass a smaller max_new_tokens")


def generate_ids(policy, prompts: list[Example], max_new_tokens: int, temperature: float = 0.0,
                 generator: torch.Generator | None = None, use_cache: bool = True,
                 batch_size: int = 64) -> list[list[int]]:
    """For each prompt, the text ids the policy generates after it, without the eos that ended them.

    Greedy when ``temperature`` is 0, else sampled from softmax(logits / temperature) with
    ``generator``. Prompts are decoded in groups of one length, ``batch_size`` at a time; the
    policy is put in eval mode meanwhile. Raises :class:`PromptTooLongError` when a prompt and
    ``max_new_tokens`` do not fit the policy's context.
    """
    policy = getattr(policy, "module", policy)  # an Accelerate-wrapped model
    if max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be at least 1, got {max_new_tokens}")
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0 (0: greedy), got {temperature}")
    for p in prompts:
        check_fits(len(p), max_new_tokens, policy.context_len)
    groups = defaultdict(list)
    for i, p in enumerate(prompts):
        groups[len(p)].append(i)
    out: list[list[int]] = [[] for _ in prompts]
    was_training = policy.training
    policy.eval()
    try:
        for length in sorted(groups):
            members = groups[length]
            for start in range(0, len(members), batch_size):
                chunk = members[start:start + batch_size]
                ids = _generate_group(policy, [prompts[i] for i in chunk], max_new_tokens, temperature, generator,
                                      use_cache)
                for i, row in zip(chunk, ids):
                    out[i] = row
    finally:
        policy.train(was_training)
    return out


@torch.no_grad()
def _generate_group(policy, prompts, max_new_tokens, temperature, generator, use_cache) -> list[list[int]]:
    """Decode prompts of one length together (see :func:`generate_ids`) by the policy's one decoding loop
    (``GatoPolicy.generate``): every token from the text ids but pad, until eos."""
    vocab, device = policy.vocab, policy.device
    eos, pad = vocab.tokenizer.eos_id, vocab.tokenizer.pad_id
    stream = prompt_stream(prompts, vocab.pad, device)
    not_pad = torch.ones(vocab.text_tokens, dtype=torch.bool)
    not_pad[pad] = False  # pad is never text to produce
    ranges = torch.tensor([[0, vocab.text_tokens]] * max_new_tokens)
    cache = policy.new_cache() if use_cache else policy.new_cache(cached=False)
    out = policy.generate(cache, stream, ranges, stream["tokens"].shape[1],
                          deterministic=temperature == 0, generator=generator, masks=[not_pad] * max_new_tokens,
                          temperature=temperature or 1.0, stop=eos)
    rows = []
    for row in out.tolist():
        rows.append(row[: row.index(eos)] if eos in row else row)
    return rows


def decode(vocab, ids: Sequence[int]) -> str:
    """The text of generated ids (the tokenizer's decode)."""
    return vocab.tokenizer.decode(ids)


def generate_text(policy, prompt: str, max_new_tokens: int = 64, temperature: float = 0.0,
                  generator: torch.Generator | None = None, use_cache: bool = True) -> str:
    """The policy's continuation of ``prompt`` (without the prompt), up to eos or ``max_new_tokens`` tokens."""
    policy = getattr(policy, "module", policy)
    ids = generate_ids(policy, [text_prompt(policy.vocab, prompt)], max_new_tokens, temperature, generator,
                       use_cache)
    return decode(policy.vocab, ids[0])


def caption_images(policy, images, image_size: int = IMAGE_SIZE, max_new_tokens: int = 32, temperature: float = 0.0,
                   generator: torch.Generator | None = None, use_cache: bool = True) -> list[str]:
    """Captions of several images (PIL or arrays), resized to image_size x image_size and cut into the policy's
    patch size (see :mod:`gato.images`)."""
    policy = getattr(policy, "module", policy)
    patches, rowcol = batch_patches(images, image_size, policy.patch_size)
    prompts = [caption_prompt(policy.vocab, p, rowcol) for p in patches]
    ids = generate_ids(policy, prompts, max_new_tokens, temperature, generator, use_cache)
    return [decode(policy.vocab, row).strip() for row in ids]


def answer_questions(policy, images, questions: Sequence[str], image_size: int = IMAGE_SIZE, max_new_tokens: int = 16,
                     temperature: float = 0.0, generator: torch.Generator | None = None,
                     use_cache: bool = True) -> list[str]:
    """The policy's answer to each (image, question) pair (images as in :func:`caption_images`)."""
    policy = getattr(policy, "module", policy)
    if len(images) != len(questions):
        raise ValueError(f"{len(images)} images but {len(questions)} questions: give one question per image")
    patches, rowcol = batch_patches(images, image_size, policy.patch_size)
    prompts = [vqa_prompt(policy.vocab, p, rowcol, q) for p, q in zip(patches, questions)]
    ids = generate_ids(policy, prompts, max_new_tokens, temperature, generator, use_cache)
    return [decode(policy.vocab, row).strip() for row in ids]


def caption(policy, image, image_size: int = IMAGE_SIZE, max_new_tokens: int = 32, **options) -> str:
    """The policy's caption of one image (``options``: temperature, generator, use_cache)."""
    return caption_images(policy, [image], image_size, max_new_tokens, **options)[0]


def ask(policy, image, question: str, image_size: int = IMAGE_SIZE, max_new_tokens: int = 16, **options) -> str:
    """The policy's answer to ``question`` about ``image`` (``options``: temperature, generator, use_cache)."""
    return answer_questions(policy, [image], [question], image_size, max_new_tokens, **options)[0]

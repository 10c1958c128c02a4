"""One decoding loop (GatoPolicy.generate) for actions and text, one uncached reference path (FullContext),
one packer (pack_runs) for control windows, text windows and image-text examples."""

import numpy as np
import pytest
import torch

from gato.batch import Run, StepLayout, pack, pack_runs
from gato.language import Example, pack_examples
from gato.policy.gato_policy import FullContext, KVCache, single_token_stream
from gato.tasks.text_task import windows_batch


def _prompt(policy, B=3, T=7, seed=0):
    g = torch.Generator().manual_seed(seed)
    tokens = torch.randint(0, policy.vocab.text_tokens, (B, T), generator=g)
    stream = single_token_stream(tokens[:, 0], 0, "cpu")
    stream["tokens"], stream["in_step_pos"] = tokens, torch.arange(T).repeat(B, 1)
    stream["patch_mask"] = torch.zeros(B, T, dtype=torch.bool)
    return stream


def test_a_stop_token_ends_every_row_and_fills_the_rest(tiny_policy):
    policy = tiny_policy(seed=1)
    eos = policy.vocab.tokenizer.eos_id
    K, V = 6, policy.vocab.text_tokens
    only_eos = torch.zeros(V, dtype=torch.bool)
    only_eos[eos] = True
    masks = [None, only_eos] + [None] * (K - 2)  # the second token can only be eos
    ranges = torch.tensor([[0, V]] * K)
    fed = []
    extend = policy.extend
    policy.extend = lambda cache, stream: fed.append(stream["tokens"].shape[1]) or extend(cache, stream)
    out = policy.generate(policy.new_cache(), _prompt(policy), ranges, 7, masks=masks, stop=eos)
    assert out.shape == (3, K) and (out[:, 1:] == eos).all()
    assert fed == [7, 1]  # the prompt, then the first token; nothing after every row stopped


def test_the_uncached_path_gives_the_cached_tokens_and_keeps_the_last_context(tiny_policy):
    policy = tiny_policy(seed=2, context_len=16)
    torch.nn.init.normal_(policy.embedding.tokens.weight, 0.0, 0.5)  # sharper, more varied choices
    ranges = torch.tensor([[0, policy.vocab.text_tokens]] * 5)
    runs = []
    for cache in (policy.new_cache(), policy.new_cache(cached=False)):
        g = torch.Generator().manual_seed(5)
        runs.append(policy.generate(cache, _prompt(policy, T=14), ranges, 14, deterministic=False, generator=g))
    assert isinstance(cache, FullContext) and not isinstance(policy.new_cache(), FullContext)
    assert isinstance(policy.new_cache(), KVCache)
    assert torch.equal(runs[0], runs[1])  # 14 + 4 fed tokens: both dropped the oldest two


def test_one_packer_lays_out_control_text_and_examples():
    # control: two units in a row (segment ids), timesteps of 3 tokens, the last a target
    layout = StepLayout(3, np.array([False, False, False]), np.array([False, False, True]), np.zeros((0, 2), np.int64))
    steps = np.arange(12).reshape(4, 3)
    none = np.zeros((4, 0, 1, 1, 1), np.float32)
    batch = pack([[[(steps[:2], none[:2], None)], [(steps[2:], none[2:], steps[2:] + 100)]]], layout, 14, -1)
    assert batch.tokens.tolist() == [[*range(12), -1, -1]]
    assert batch.in_step_pos.tolist() == [[0, 1, 2] * 4 + [0, 0]]
    assert batch.targets.tolist() == [[False, False, True] * 4 + [False, False]]
    assert batch.segment_ids.tolist() == [[0] * 6 + [1] * 6 + [2, 2]]
    assert batch.inputs.tolist() == [[*range(6), *range(106, 112), -1, -1]]
    # text windows: one per row, no segments
    text = windows_batch([np.array([5, 6, 7]), np.array([8])], 4, 0)
    assert text.tokens.tolist() == [[5, 6, 7, 0], [8, 0, 0, 0]] and text.segment_ids is None
    assert text.targets.tolist() == [[True, True, True, False], [True, False, False, False]]
    # image-text examples: the patches in order, in_step_pos restarting at each example
    ex = Example(np.array([9, 9, 4]), np.array([True, True, False]), np.array([False, False, True]),
                 np.ones((2, 3, 4, 4), np.float32), np.array([[0, 0], [0, 1]]))
    packed = pack_examples([[ex, ex]], 7, 0)
    assert packed.in_step_pos.tolist() == [[0, 1, 2, 0, 1, 2, 0]] and packed.patches.shape == (4, 3, 4, 4)
    assert packed.segment_ids.tolist() == [[0, 0, 0, 1, 1, 1, 2]]
    with pytest.raises(ValueError, match="units of 5 tokens do not fit a row of 4"):
        pack_runs([[[Run(np.zeros(5, np.int64), np.arange(5), np.zeros(5, bool), np.ones(5, bool),
                         np.zeros((0, 1, 1, 1), np.float32), np.zeros((0, 2), np.int64))]]], 4, 0)

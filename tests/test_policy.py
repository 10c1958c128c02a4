"""GatoPolicy: the loss mask, causality, the KV cache (chunked, token by token, eviction),
constrained generation, kernels and activations, checkpoints, NEKO's keywords, GPT-2 init, the one
PolicyConfig (GatoPolicy(config), TrainingArgs' flags, config.json) and the weight-decay groups."""

from __future__ import annotations

import json
import os
from argparse import Namespace

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from gato.agent import Agent
from gato.batch import StepLayout
from gato.policy.config import PolicyConfig
from gato.policy.gato_policy import GatoPolicy, single_token_stream

STREAM_KEYS = ("tokens", "in_step_pos", "patch_mask", "patches", "patch_rowcol")


def batch_of(task, model, n=3, seed=0, context_len=None):
    return task.sample_batch(n, model.vocab, context_len=context_len, rng=np.random.default_rng(seed))


def as_stream(batch, model, trim=True) -> dict:
    """Batch -> policy stream, trailing all-padding columns removed (as forward does)."""
    s = batch.to_torch()
    if trim:
        real = (s["tokens"] != model.vocab.pad) | s["patch_mask"]
        last = int(real.any(0).nonzero().max()) + 1
        s = slice_stream(s, 0, last)
    return s


def slice_stream(stream: dict, t0: int, t1: int) -> dict:
    """Columns [t0, t1) of a stream, with exactly the patches that fall inside them."""
    mask = stream["patch_mask"]
    index = torch.full(mask.shape, -1, dtype=torch.long)
    index[mask] = torch.arange(int(mask.sum()))
    keep = index[:, t0:t1][mask[:, t0:t1]]
    out = {k: stream[k][:, t0:t1] for k in ("tokens", "in_step_pos", "patch_mask")}
    if "targets" in stream:
        out["targets"] = stream["targets"][:, t0:t1]
    out["patches"] = stream["patches"][keep]
    out["patch_rowcol"] = stream["patch_rowcol"][keep]
    return out


def cat_streams(a: dict, b: dict) -> dict:
    """Join two streams column-wise (patches are row-major over (B, T): regroup them by row)."""
    out = {k: torch.cat([a[k], b[k]], 1) for k in ("tokens", "in_step_pos", "patch_mask")}
    for key in ("patches", "patch_rowcol"):
        pa = torch.split(a[key], a["patch_mask"].sum(1).tolist())
        pb = torch.split(b[key], b["patch_mask"].sum(1).tolist())
        parts = []
        for x, y in zip(pa, pb):
            parts += [x, y.reshape((-1,) + x.shape[1:]).to(x.dtype)]
        out[key] = torch.cat(parts)
    return out


# --------------------------------------------------------------------------- (a) loss mask


@pytest.mark.parametrize("task_name", ["cartpole_task", "babyai_task"])
def test_targets_are_exactly_the_action_tokens(task_name, request, tiny_policy):
    task = request.getfixturevalue(task_name)
    model = tiny_policy()
    codec = task.codec_for(model.vocab)
    S, n_obs, n_act = codec.tokens_per_step, codec.obs_tokens, codec.action_tokens
    assert S == n_obs + 1 + n_act
    batch = batch_of(task, model, n=6)
    B, L = batch.tokens.shape
    assert L == task.context_len
    is_action = np.r_[np.zeros(n_obs + 1, bool), np.ones(n_act, bool)]
    later = np.r_[~codec.obs_once, np.ones(1 + n_act, bool)]  # what a timestep after a window's first keeps
    assert later.sum() == codec.tokens_per_later_step
    for b in range(B):
        real = (batch.tokens[b] != model.vocab.pad) | batch.patch_mask[b]
        n = int(real.nonzero()[0].max()) + 1
        steps = 1 + (n - S) // codec.tokens_per_later_step
        assert n == codec.window_tokens(steps) and real[:n].all()
        keep = np.r_[np.ones(S, bool), np.tile(later, steps - 1)]  # the whole first timestep, then the later ones
        np.testing.assert_array_equal(batch.targets[b, :n], np.tile(is_action, steps)[keep])
        assert not batch.targets[b, n:].any(), "a pad position is a target"
        assert (batch.tokens[b, n:] == model.vocab.pad).all()
        obs_then_action = np.r_[codec.obs_is_patch, np.zeros(1 + n_act, bool)]
        np.testing.assert_array_equal(batch.patch_mask[b, :n], np.tile(obs_then_action, steps)[keep])
        np.testing.assert_array_equal(batch.in_step_pos[b, :n], np.tile(np.arange(S), steps)[keep])
        step_tokens = np.full(steps * S, -1)
        step_tokens[keep] = batch.tokens[b, :n]
        step_tokens = step_tokens.reshape(steps, S)
        assert (step_tokens[:, n_obs] == model.vocab.separator).all()
        acts = step_tokens[:, n_obs + 1 :]
        assert ((acts >= codec.action_ranges[:, 0]) & (acts < codec.action_ranges[:, 1])).all()
    assert batch.patches.shape[0] == batch.patch_mask.sum() == batch.patch_rowcol.shape[0]


@pytest.mark.parametrize("task_name", ["cartpole_task", "babyai_task"])
def test_loss_is_cross_entropy_over_exactly_the_action_tokens(task_name, request, tiny_policy):
    task = request.getfixturevalue(task_name)
    model = tiny_policy()
    codec = task.codec_for(model.vocab)
    batch = batch_of(task, model, n=4, seed=1)
    stream = batch.to_torch()
    logits, loss = model(stream)

    # Positions to predict, from the codec's layout alone (not from Batch.targets).
    S, first_action = codec.tokens_per_step, codec.obs_tokens + 1
    with torch.no_grad():
        full = model.logits(model.hidden_states(stream))
    terms, rows = [], []
    for b in range(len(batch)):
        real = (batch.tokens[b] != model.vocab.pad) | batch.patch_mask[b]
        n = int(real.nonzero()[0].max()) + 1
        steps = codec.timesteps_in(n)
        later = np.r_[~codec.obs_once, np.ones(S - codec.obs_tokens, bool)]
        place = np.tile(np.arange(S), steps)[np.r_[np.ones(S, bool), np.tile(later, steps - 1)]]  # in its timestep
        for t in range(1, n):
            if place[t] >= first_action:
                rows.append(full[b, t - 1])
                terms.append(F.cross_entropy(full[b, t - 1][None].float(), stream["tokens"][b, t][None]))
    assert logits.shape == (len(rows), model.vocab.size)
    torch.testing.assert_close(logits.detach(), torch.stack(rows), atol=1e-5, rtol=1e-5)
    manual = torch.stack(terms).mean()
    torch.testing.assert_close(loss.detach(), manual, atol=1e-5, rtol=1e-5)
    assert torch.isfinite(loss)
    # pad_seq (no trimming of trailing padding) computes the same loss
    padded = tiny_policy(pad_seq=True)
    torch.testing.assert_close(padded(stream)[1].detach(), manual, atol=1e-5, rtol=1e-5)


def test_prompted_batches_keep_the_mask(cartpole_dataset, tiny_policy):
    from argparse import Namespace

    from gato.tasks.control_task import ControlTask

    model = tiny_policy()
    task = ControlTask("cartpole", gym.make("CartPole-v1"), cartpole_dataset, 60, Namespace(patch_size=4),
                       prompt_ep_proportion=1.0, share_prompt_episodes=False, prompt_type="uniform",
                       vocab=model.vocab)
    layout = StepLayout.of(task.codec_for(model.vocab))
    batch = batch_of(task, model, n=5, seed=3)
    S = layout.tokens_per_step
    for b in range(5):
        n = int((batch.tokens[b] != model.vocab.pad).sum())
        np.testing.assert_array_equal(batch.targets[b, :n], np.tile(layout.is_target, n // S))
        assert not batch.targets[b, n:].any()
    assert torch.isfinite(model(batch.to_torch())[1])


# --------------------------------------------------------------------------- (b) causality


def test_later_tokens_and_patches_never_change_earlier_positions(babyai_task, tiny_policy):
    model = tiny_policy()
    stream = as_stream(batch_of(babyai_task, model, n=2, seed=2), model)
    T = stream["tokens"].shape[1]
    with torch.no_grad():
        base = model.hidden_states(stream)
        base_logits = model.logits(base)

    # a later (non-patch) token: the action token of row 0's fourth timestep
    codec = babyai_task.codec_for(model.vocab)
    k = 4 * codec.tokens_per_step - 1
    assert k < T and not stream["patch_mask"][0, k]
    changed = dict(stream, tokens=stream["tokens"].clone())
    changed["tokens"][0, k] = (changed["tokens"][0, k] + 1 - codec.action_ranges[0, 0]) % 7 + codec.action_ranges[0, 0]
    with torch.no_grad():
        out = model.hidden_states(changed)
    torch.testing.assert_close(out[0, :k], base[0, :k], atol=0, rtol=0)
    torch.testing.assert_close(model.logits(out)[0, :k], base_logits[0, :k], atol=0, rtol=0)
    assert not torch.allclose(out[0, k], base[0, k])
    torch.testing.assert_close(out[1], base[1], atol=0, rtol=0)  # rows never see each other

    # a later patch: the first patch of row 0's third timestep
    positions = stream["patch_mask"][0].nonzero()[:, 0]
    j = 2 * codec.patches_per_step
    k = int(positions[j])
    changed = dict(stream, patches=stream["patches"].clone())
    changed["patches"][j] = -changed["patches"][j]
    with torch.no_grad():
        out = model.hidden_states(changed)
    torch.testing.assert_close(out[0, :k], base[0, :k], atol=0, rtol=0)
    assert not torch.allclose(out[0, k], base[0, k])


# --------------------------------------------------------------------------- (c) the cache


@pytest.mark.parametrize("flash", [True, False])
def test_cached_chunks_and_single_tokens_equal_the_full_pass(babyai_task, tiny_policy, flash):
    # float64: an untrained model's residual stream is small (every table starts at 0.02), so
    # LayerNorm magnifies float32 rounding to ~2e-4; in float64 any gap is a caching mistake.
    model = tiny_policy(flash=flash).double()
    stream = as_stream(batch_of(babyai_task, model, n=2, seed=4), model)
    T = stream["tokens"].shape[1]
    assert stream["patches"].shape[0] > 0
    with torch.no_grad():
        full = model.hidden_states(stream)

        cuts = [0, 1, 7, 30, 31, 64, T]
        # the policy's cache is preallocated; one made with no capacity grows its buffers
        for cache in (model.new_cache(), model.transformer.new_cache()):
            chunks = [model.hidden_states(slice_stream(stream, a, b), cache) for a, b in zip(cuts, cuts[1:]) if b > a]
            assert cache.length == T and cache.next_position == T
            torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-4, rtol=1e-4)

        cache = model.new_cache()
        singles = [model.hidden_states(slice_stream(stream, t, t + 1), cache) for t in range(T)]
        torch.testing.assert_close(torch.cat(singles, 1), full, atol=1e-4, rtol=1e-4)

        cache = model.new_cache()
        last = [model.extend(cache, slice_stream(stream, a, b)) for a, b in ((0, 40), (40, T))]
        torch.testing.assert_close(last[-1], full[:, -1], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(last[0], full[:, 39], atol=1e-4, rtol=1e-4)


# --------------------------------------------------------------------------- (d) eviction


def test_extend_drops_the_oldest_tokens_when_the_context_is_full(cartpole_task, tiny_policy):
    model = tiny_policy(context_len=32)
    stream = as_stream(batch_of(cartpole_task, model, n=2, seed=5, context_len=60), model)
    T = stream["tokens"].shape[1]
    assert T > 40
    cache = model.new_cache()
    fed = 0
    for a in range(0, T, 6):
        chunk = slice_stream(stream, a, min(a + 6, T))
        before = [k.clone() for k in cache.keys] if cache.keys[0] is not None else None
        hidden = model.extend(cache, chunk)
        fed += chunk["tokens"].shape[1]
        assert torch.isfinite(hidden).all()
        assert cache.length == min(fed, 32)
        assert cache.next_position == fed  # positions keep counting past evictions
        if before is not None:
            kept = cache.length - chunk["tokens"].shape[1]
            for old, new in zip(before, cache.keys):
                # what is kept is the newest part of what was there, untouched
                torch.testing.assert_close(new[:, :, :kept], old[:, :, old.shape[2] - kept :], atol=0, rtol=0)
    # generating keeps working on a full cache, and the cache stays within the context
    codec = cartpole_task.codec_for(model.vocab)
    ranges = torch.as_tensor(codec.action_ranges)
    obs_chunk = slice_stream(stream, 0, codec.obs_tokens + 1)
    out = model.generate(cache, obs_chunk, ranges, codec.obs_tokens + 1)
    assert out.shape == (2, 1) and ((out >= ranges[0, 0]) & (out < ranges[0, 1])).all()
    assert cache.length == 32


@pytest.mark.parametrize("task_name, env_id", [("cartpole_task", "CartPole-v1"),
                                                ("babyai_task", "BabyAI-GoToRedBall-v0")])
def test_rollout_loop_with_a_small_context_keeps_running(task_name, env_id, request, tiny_policy, monkeypatch):
    """A real env loop (the agent's own chunks), far past the context: observation chunks go
    in, generated actions come out and step the envs."""
    task = request.getfixturevalue(task_name)
    model = tiny_policy(context_len=24)
    caches = []  # the agent's cache, to watch it
    new_cache = model.new_cache
    monkeypatch.setattr(model, "new_cache", lambda **kw: caches.append(new_cache(**kw)) or caches[-1])
    agent = Agent(model, task, deterministic=False, generator=torch.Generator().manual_seed(0))
    envs = gym.vector.SyncVectorEnv([lambda: gym.make(env_id) for _ in range(2)])
    obs, _ = envs.reset(seed=[0, 1])
    agent.reset(n_envs=2)
    for _ in range(12):  # 12 steps of >= 6 tokens through a 24-token context
        actions = agent.act_batch(obs)
        assert envs.action_space.contains(actions)
        assert caches[-1].length <= 24
        obs, *_ = envs.step(actions)
    envs.close()
    # every token went through a cache: one, or (BabyAI, its mission read once per window) several refilled ones
    assert sum(c.next_position for c in caches) >= 12 * agent.codec.tokens_per_later_step - 1


@pytest.mark.parametrize("task_name", ["cartpole_task", "babyai_task"])
def test_evaluate_runs_through_cache_eviction(task_name, request, tiny_policy, monkeypatch):
    from gato.policy.transformer import KVCache

    task = request.getfixturevalue(task_name)
    model = tiny_policy(context_len=task.context_len)
    dropped = []
    original = KVCache.drop_oldest
    monkeypatch.setattr(KVCache, "drop_oldest", lambda self, n: (dropped.append(n), original(self, n))[1])
    metrics = task.evaluate(model, n_iterations=2, n_envs=2)
    assert metrics["episodes"] == 2.0
    assert np.isfinite(metrics["mean_return"]) and metrics["mean_episode_len"] >= 1
    if metrics["mean_episode_len"] * task.tokens_per_timestep > task.context_len and not task.codec.obs_once.any():
        assert dropped and min(dropped) > 0  # the context filled up and evaluation went on


def test_extend_refuses_a_chunk_longer_than_the_context(babyai_task, tiny_policy):
    """A single chunk that cannot fit the context is a caller error, reported clearly."""
    model = tiny_policy(context_len=32)
    stream = as_stream(batch_of(babyai_task, model, n=2, seed=12), model)
    chunk = slice_stream(stream, 0, 40)
    cache = model.new_cache()
    with pytest.raises(ValueError, match="cannot fit context_len 32"):
        model.extend(cache, chunk)
    assert cache.length == 0


def test_evaluate_with_a_model_context_shorter_than_the_tasks(babyai_task, tiny_policy):
    model = tiny_policy(context_len=32)
    metrics = babyai_task.evaluate(model, n_iterations=1, n_envs=1)
    assert metrics["episodes"] == 1.0


# --------------------------------------------------------------------------- (e) generate


def test_generate_restricts_each_token_to_its_range(babyai_task, tiny_policy):
    model = tiny_policy()
    v = model.vocab
    stream = as_stream(batch_of(babyai_task, model, n=3, seed=6), model)
    ranges = torch.tensor([
        [v.discrete_offset + 3, v.discrete_offset + 5],
        [v.continuous_offset + 10, v.continuous_offset + 11],
        [0, 7],
        [v.separator, v.separator + 1],
        [v.discrete_offset, v.continuous_offset + v.continuous_tokens],
    ])
    first_pos = 3
    for deterministic in (True, False):
        cache = model.new_cache()
        gen = torch.Generator().manual_seed(1)
        out = model.generate(cache, stream, ranges, first_pos, deterministic=deterministic, generator=gen)
        assert out.shape == (3, len(ranges))
        assert ((out >= ranges[:, 0]) & (out < ranges[:, 1])).all()
        # the last token is not fed back: the cache holds the stream plus K - 1 tokens
        assert cache.length == stream["tokens"].shape[1] + len(ranges) - 1

    # deterministic = argmax of the restricted logits of the full pass, token after token
    cache = model.new_cache()
    out = model.generate(cache, stream, ranges, first_pos)
    ids = torch.arange(v.size)
    s = stream
    for j, (lo, hi) in enumerate(ranges.tolist()):
        with torch.no_grad():
            logits = model.logits(model.hidden_states(s)[:, -1])
        expected = logits.masked_fill((ids < lo) | (ids >= hi), float("-inf")).argmax(-1)
        assert out[:, j].tolist() == expected.tolist()
        s = cat_streams(s, single_token_stream(out[:, j], first_pos + j, "cpu"))


# --------------------------------------------------------------------------- (f) kernels


@pytest.mark.parametrize("activation", ["gelu", "geglu"])
def test_activations_and_flash_give_finite_equal_outputs(babyai_task, tiny_policy, activation):
    flash = tiny_policy(seed=7, activation_fn=activation, flash=True)
    plain = tiny_policy(seed=7, activation_fn=activation, flash=False)
    for (name, a), b in zip(flash.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name
    stream = batch_of(babyai_task, flash, n=3, seed=8).to_torch()
    with torch.no_grad():
        la, loss_a = flash(stream)
        lb, loss_b = plain(stream)
        ha = flash.hidden_states(stream)
        hb = plain.hidden_states(stream)
    assert torch.isfinite(loss_a) and torch.isfinite(loss_b)
    torch.testing.assert_close(la, lb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(ha, hb, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(loss_a, loss_b, atol=1e-5, rtol=1e-5)
    # training mode with dropout: finite loss and gradients
    model = tiny_policy(seed=7, activation_fn=activation, flash=True, dropout=0.1).train()
    _, loss = model(stream)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert model.embedding.patches.stem.weight.grad is not None  # images reach the loss


def test_unknown_activation_is_rejected(tiny_policy):
    with pytest.raises(ValueError, match="gelu.*geglu"):
        tiny_policy(activation_fn="relu")


# --------------------------------------------------------------------------- (g) checkpoints


def test_policy_without_value_embedding_saves_and_loads(tmp_path, tiny_policy):
    model = tiny_policy(value_embedding=False)
    assert model.embedding.values is None
    assert torch.equal(model.embedding.table(), model.embedding.tokens.weight)
    model.save_pretrained(tmp_path / "plain")
    assert GatoPolicy.from_pretrained(tmp_path / "plain").config.value_embedding is False


def test_value_embedding_makes_neighbouring_bins_alike(tiny_policy):
    """A continuous bin starts out closer to its neighbours than to far-away bins."""
    model = tiny_policy()
    with torch.no_grad():
        table = torch.nn.functional.normalize(model.embedding.table(), dim=1)
    v = model.vocab
    c = v.continuous_offset + v.continuous_tokens // 2
    near = (table[c] * table[c + 1]).sum()
    far = (table[c] * table[c + v.continuous_tokens // 3]).sum()
    assert near > far + 0.1


def test_position_codes_start_at_the_token_tables_scale(tiny_policy):
    """Position tables as large as N(0, 1) would drown every token's identity at the start."""
    emb = tiny_policy().embedding
    token_scale = emb.tokens.weight.std().item()
    for table in (emb.in_step, emb.patch_row, emb.patch_col):
        assert table.weight.std().item() < 2 * token_scale


def test_image_summary_is_the_cnn_of_each_whole_image():
    """Patches of images of two grid shapes, interleaved as in a multi-task batch: every patch
    gets the CNN of exactly its own reassembled image."""
    from gato.policy.embedding import ImageSummary

    torch.manual_seed(0)
    summary = ImageSummary(channels=3, dim=16).double()
    P, grids = 4, [(2, 2), (3, 5), (2, 2)]
    images = [torch.randn(3, r * P, c * P, dtype=torch.float64) for r, c in grids]
    patches, rowcol = [], []
    for (r, c), image in zip(grids, images):
        patches.append(image.reshape(3, r, P, c, P).permute(1, 3, 0, 2, 4).reshape(r * c, 3, P, P))
        rowcol.append(torch.stack(torch.meshgrid(torch.arange(r), torch.arange(c), indexing="ij"), -1).reshape(-1, 2))
    out = summary(torch.cat(patches), torch.cat(rowcol))
    start = 0
    for (r, c), image in zip(grids, images):
        expected = summary.read(image[None])[0]
        torch.testing.assert_close(out[start:start + r * c], expected.expand(r * c, -1))
        start += r * c
    assert not torch.allclose(out[0], out[-1])  # two different images, two summaries


def test_image_summary_pooled_read_is_where_independent():
    """A small square moved by a multiple of the CNN's stride (4 pixels) on a plain background: the pooled
    read (what is there) is unchanged, the grid read (where it is) changes; a red square reads otherwise
    than a blue one."""
    from gato.policy.embedding import ImageSummary

    torch.manual_seed(0)
    summary = ImageSummary(channels=3, dim=16, pooled=True).double()

    def image(row, col, colour):
        x = torch.full((1, 3, 32, 32), 0.5, dtype=torch.float64)
        x[0, :, row:row + 6, col:col + 6] = torch.tensor(colour, dtype=torch.float64)[:, None, None]
        return x

    def pooled(x):
        return summary.pooled(summary.net(x).amax(dim=(2, 3)))

    red_here, red_there = image(8, 8, (1, -1, -1)), image(16, 20, (1, -1, -1))
    torch.testing.assert_close(pooled(red_here), pooled(red_there))
    assert not torch.allclose(summary.read(red_here), summary.read(red_there))
    assert not torch.allclose(pooled(red_here), pooled(image(8, 8, (-1, -1, 1))))
    grid_only = ImageSummary(channels=3, dim=16)
    assert grid_only.pooled is None and sum(p.numel() for p in grid_only.parameters()) < sum(
        p.numel() for p in summary.parameters())


def test_image_summary_keeps_timesteps_causal_and_the_cache_exact(babyai_task, tiny_policy):
    """The summary mixes the patches of one image, never of two timesteps: a later timestep's
    image leaves earlier timesteps untouched, and a rollout fed whole timesteps through the
    cache equals the full pass."""
    model = tiny_policy(image_summary=True).double()
    stream = as_stream(batch_of(babyai_task, model, n=2, seed=4), model)
    codec = babyai_task.codec_for(model.vocab)
    T, S = stream["tokens"].shape[1], codec.tokens_per_step
    with torch.no_grad():
        full = model.hidden_states(stream)
        j = 2 * codec.patches_per_step  # the first patch of row 0's third timestep
        k = int(stream["patch_mask"][0].nonzero()[j, 0])
        changed = dict(stream, patches=stream["patches"].clone())
        changed["patches"][j] = -changed["patches"][j]
        out = model.hidden_states(changed)
        torch.testing.assert_close(out[0, :k], full[0, :k], atol=0, rtol=0)
        assert not torch.allclose(out[0, k + 1], full[0, k + 1])  # the same image's next patch sees it

        # rows are whole timesteps from column 0 (the mission in the first only), cut where row 0's start
        real = (stream["tokens"][0] != model.vocab.pad) | stream["patch_mask"][0]
        steps = (((stream["in_step_pos"][0] == 0) & real).nonzero()[:, 0]).tolist() + [T]
        assert len(steps) > 3 and codec.tokens_per_later_step < S
        cache = model.new_cache()
        chunks = [model.hidden_states(slice_stream(stream, a, b), cache) for a, b in zip(steps, steps[1:])]
        torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-4, rtol=1e-4)


def test_save_and_load_round_trip_exactly(tmp_path, babyai_task, tiny_policy, monkeypatch):
    model = tiny_policy(seed=9, activation_fn="geglu", flash=False, use_patch_pos_encoding=False, image_summary=True)
    directory = tmp_path / "ckpt"
    model.save_pretrained(directory)
    assert sorted(os.listdir(directory)) == ["README.md", "config.json", "model.safetensors"]
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]  # no temporary or backup directory left
    umask = os.umask(0)
    os.umask(umask)
    assert directory.stat().st_mode & 0o777 == 0o777 & ~umask  # not mkdtemp's private 0700
    assert (directory / "model.safetensors").stat().st_mode & 0o777 == 0o666 & ~umask
    config = json.loads((directory / "config.json").read_text())
    assert config["activation_fn"] == "geglu" and config["embed_dim"] == 32

    from safetensors import safe_open

    with safe_open(str(directory / "model.safetensors"), "pt") as f:
        assert set(f.keys()) == set(model.state_dict())

    def no_unpickling(*args, **kwargs):
        raise AssertionError("checkpoints must not be unpickled")

    monkeypatch.setattr(torch, "load", no_unpickling)
    loaded = GatoPolicy.from_pretrained(directory).eval()
    assert loaded.config == model.config
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        assert torch.equal(a, b), name
    stream = batch_of(babyai_task, model, n=2, seed=10).to_torch()
    with torch.no_grad():
        la, loss_a = model(stream)
        lb, loss_b = loaded(stream)
    assert torch.equal(la, lb) and torch.equal(loss_a, loss_b)

    # saving again over the same directory replaces it cleanly
    other = tiny_policy(seed=11, activation_fn="geglu", flash=False, use_patch_pos_encoding=False)
    other.save_pretrained(directory)
    assert sorted(os.listdir(tmp_path)) == ["ckpt"]
    reloaded = GatoPolicy.from_pretrained(directory)
    assert torch.equal(reloaded.embedding.tokens.weight, other.embedding.tokens.weight)


# --------------------------------------------------------------------------- (h) NEKO's keywords


def test_accepts_every_keyword_of_nekos_notebook_call(cartpole_task):
    torch.manual_seed(0)
    model = GatoPolicy(
        device="cpu",
        embed_dim=32,
        layers=2,
        heads=2,
        dropout=0.1,
        mu=100,
        M=256,
        patch_size=4,
        resid_mid_channels=16,
        continuous_tokens=64,
        discrete_tokens=64,
        context_len=64,
        use_patch_pos_encoding=True,
        use_pos_encoding=False,
        activation_fn="gelu",
        pretrained_lm=None,
        flash=False,
        tokenizer_model_name=None,
        pad_seq=True,
    )
    assert model.config.pad_seq and not model.config.use_pos_encoding
    assert model.embed_dim == 32 and model.config.dropout == 0.1
    assert model.device == torch.device("cpu")
    _, loss = model(batch_of(cartpole_task, model, n=2).to_torch())
    assert torch.isfinite(loss)


# --------------------------------------------------------------------------- (i) no downloads


def test_hub_names_fail_fast_without_network(no_network, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # no ./gpt2 folder to find by accident
    with pytest.raises(ValueError, match="local directory"):
        GatoPolicy(embed_dim=32, layers=2, heads=2, context_len=32, pretrained_lm="gpt2")
    with pytest.raises(ValueError, match="local directory"):
        GatoPolicy(embed_dim=32, layers=2, heads=2, context_len=32, tokenizer_model_name="gpt2")


# --------------------------------------------------------------------------- (j) GPT-2 init


def fake_gpt2(directory, n_embd=32, n_layer=2, n_head=2, prefix="", seed=0):
    from safetensors.torch import save_file

    g = torch.Generator().manual_seed(seed)
    r = lambda *shape: torch.randn(*shape, generator=g) * 0.1  # noqa: E731
    state = {"wte.weight": r(50, n_embd), "wpe.weight": r(16, n_embd)}
    for i in range(n_layer):
        h = f"h.{i}."
        state.update({
            h + "ln_1.weight": 1 + r(n_embd), h + "ln_1.bias": r(n_embd),
            h + "attn.bias": torch.tril(torch.ones(1, 1, 16, 16)),  # HF's causal-mask buffer
            h + "attn.c_attn.weight": r(n_embd, 3 * n_embd), h + "attn.c_attn.bias": r(3 * n_embd),
            h + "attn.c_proj.weight": r(n_embd, n_embd), h + "attn.c_proj.bias": r(n_embd),
            h + "ln_2.weight": 1 + r(n_embd), h + "ln_2.bias": r(n_embd),
            h + "mlp.c_fc.weight": r(n_embd, 4 * n_embd), h + "mlp.c_fc.bias": r(4 * n_embd),
            h + "mlp.c_proj.weight": r(4 * n_embd, n_embd), h + "mlp.c_proj.bias": r(n_embd),
        })
    state.update({"ln_f.weight": 1 + r(n_embd), "ln_f.bias": r(n_embd)})
    directory.mkdir(parents=True)
    save_file({prefix + k: v.contiguous() for k, v in state.items()}, str(directory / "model.safetensors"))
    (directory / "config.json").write_text(json.dumps({
        "model_type": "gpt2", "n_embd": n_embd, "n_layer": n_layer, "n_head": n_head,
        "vocab_size": 50, "n_positions": 16, "activation_function": "gelu_new",
    }))
    return state


def test_gpt2_directory_without_safetensors_is_refused(tmp_path):
    fake_gpt2(tmp_path / "lm")
    (tmp_path / "lm" / "model.safetensors").unlink()
    with pytest.raises(ValueError, match="model.safetensors"):
        GatoPolicy(context_len=32, pretrained_lm=str(tmp_path / "lm"))


# --------------------------------------------------------------------------- packing


def test_packed_rows_equal_each_window_run_alone(babyai_dataset, tiny_policy):
    """Several windows in one row, kept apart by segment_ids, give every window exactly the
    hidden states and loss terms it gets alone in a row of its own."""
    from gato.tasks.control_task import ControlTask

    model = tiny_policy(context_len=256)
    task = ControlTask("packed", None, babyai_dataset, 256, Namespace(patch_size=4), pack_windows=True,
                       vocab=model.vocab)
    batch = task.sample_batch(3, model.vocab, rng=np.random.default_rng(3))
    assert batch.segment_ids is not None and (batch.segment_ids.max(1) >= 2).any()  # rows hold >1 window
    stream = batch.to_torch()
    hidden = model.hidden_states(stream)
    logits, loss = model(stream)
    terms, n_units = [], 0
    for b in range(len(batch)):
        seg = stream["segment_ids"][b]
        real = (stream["tokens"][b] != model.vocab.pad) | stream["patch_mask"][b]
        for unit in seg[real].unique():
            cols = (seg == unit).nonzero()[:, 0]
            t0, t1 = int(cols[0]), int(cols[-1]) + 1
            row = {k: v[b : b + 1] for k, v in stream.items() if k not in ("patches", "patch_rowcol")}
            row.pop("segment_ids")
            first = int(stream["patch_mask"][:b].sum())
            n = int(stream["patch_mask"][b].sum())
            row["patches"] = stream["patches"][first : first + n]
            row["patch_rowcol"] = stream["patch_rowcol"][first : first + n]
            alone = slice_stream(row, t0, t1)
            torch.testing.assert_close(model.hidden_states(alone)[0], hidden[b, t0:t1], atol=1e-5, rtol=1e-4)
            unit_logits, _ = model(alone)
            terms.append(torch.nn.functional.cross_entropy(unit_logits, alone["tokens"][:, 1:][alone["targets"][:, 1:]],
                                                           reduction="sum"))
            n_units += 1
    n_targets = int(batch.targets.sum())
    assert n_units > len(batch)
    torch.testing.assert_close(torch.stack(terms).sum() / n_targets, loss, atol=1e-5, rtol=1e-4)


def test_text_film_reads_the_grid_given_its_own_timesteps_text(babyai_step_task, tiny_policy):
    """With ``text_film`` a patch's embedding depends on the mission of its own timestep (even
    though the mission comes after the image), never on another timestep's; earlier timesteps
    stay untouched, and whole timesteps fed through the cache equal the full pass."""
    babyai_task = babyai_step_task  # the mission in every timestep
    model = tiny_policy(text_film=True).double()
    torch.nn.init.normal_(model.embedding.patches.film[1].weight, 0.0, 0.5)  # not the identity it starts as
    stream = as_stream(batch_of(babyai_task, model, n=2, seed=4), model)
    codec = babyai_task.codec_for(model.vocab)
    T, S = stream["tokens"].shape[1], codec.tokens_per_step
    text = (stream["tokens"][0] < model.vocab.text_tokens) & (stream["tokens"][0] != model.vocab.tokenizer.pad_id)
    third_step_text = int(text.nonzero()[2 * int(text[:S].sum()), 0])  # the first mission word of timestep 3
    first_patch = int(stream["patch_mask"][0].nonzero()[2 * codec.patches_per_step, 0])
    assert first_patch < third_step_text < 3 * S
    with torch.no_grad():
        full = model.hidden_states(stream)
        changed = dict(stream, tokens=stream["tokens"].clone())
        word = int(changed["tokens"][0, third_step_text])
        changed["tokens"][0, third_step_text] = (word + 1) % model.vocab.text_tokens
        out = model.hidden_states(changed)
        torch.testing.assert_close(out[0, :first_patch], full[0, :first_patch], atol=0, rtol=0)
        assert not torch.allclose(out[0, first_patch], full[0, first_patch])  # its own image reads it

        steps = list(range(0, T, S)) + [T]
        cache = model.new_cache()
        chunks = [model.hidden_states(slice_stream(stream, a, b), cache) for a, b in zip(steps, steps[1:])]
        torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-4, rtol=1e-4)


def test_a_window_reads_its_mission_once_and_conditions_every_image_on_it(babyai_task, babyai_step_task,
                                                                         tiny_policy):
    """The mission read once per window: each later timestep is the mission's tokens shorter, and every image's
    embedding is the one it has with the mission in every timestep (the FiLM carries the window's text);
    another mission in the first timestep moves every later image."""
    from gato.batch import StepLayout, pack
    from gato.tasks.windows import timesteps

    model = tiny_policy(text_film=True).double()
    torch.nn.init.normal_(model.embedding.patches.film[1].weight, 0.0, 0.5)
    once, every = babyai_task.codec_for(model.vocab), babyai_step_task.codec_for(model.vocab)
    mission = int(once.obs_once.sum())
    assert mission > 0 and not every.obs_once.any()
    assert once.tokens_per_later_step == every.tokens_per_step - mission == once.tokens_per_step - mission
    np.testing.assert_array_equal(babyai_task.episodes.steps, babyai_step_task.episodes.steps)  # same rows
    k = int(min(6, babyai_task.episodes.lengths[0]))
    assert k >= 3

    def embedded(codec, tokens=None):
        segment = timesteps(babyai_task.episodes, codec, 0, 0, k)
        stream = pack([[[segment]]], StepLayout.of(codec), codec.window_tokens(k), model.vocab.pad).to_torch()
        if tokens is not None:
            stream["tokens"] = tokens
        with torch.no_grad():
            x = model.embedding(stream["tokens"], stream["in_step_pos"], stream["patch_mask"], stream["patches"],
                                stream["patch_rowcol"])
        return stream, x[stream["patch_mask"]]

    window, patches_once = embedded(once)
    _, patches_every = embedded(every)
    assert window["tokens"].shape[1] == k * every.tokens_per_step - (k - 1) * mission
    torch.testing.assert_close(patches_once, patches_every, atol=1e-9, rtol=1e-9)
    word = int(((window["in_step_pos"][0] >= 0) & ~window["patch_mask"][0] & (window["tokens"][0] <
               model.vocab.text_tokens) & (window["tokens"][0] != model.vocab.tokenizer.pad_id)).nonzero()[0, 0])
    other = window["tokens"].clone()
    other[0, word] = (int(other[0, word]) + 1) % model.vocab.text_tokens
    _, moved = embedded(once, other)
    per_step = once.patches_per_step
    for t in range(k):  # every timestep's image reads the one mission
        assert not torch.allclose(moved[t * per_step], patches_once[t * per_step])


def test_the_film_carry_stays_inside_its_packed_unit(tiny_policy):
    """A timestep without text takes its unit's latest text, never another unit's (segment_ids)."""
    model = tiny_policy(text_film=True).double()
    torch.nn.init.normal_(model.embedding.patches.film[1].weight, 0.0, 0.5)
    vocab, P = model.vocab, model.patch_size
    word = vocab.tokenizer.encode(" red")[0]
    # unit 0: [patch, word, sep, act] then [patch, sep, act]; unit 1: [patch, sep, act]
    tokens = torch.tensor([[vocab.pad, word, vocab.separator, 0, vocab.pad, vocab.separator, 0,
                            vocab.pad, vocab.separator, 0]])
    in_step = torch.tensor([[0, 1, 2, 3, 0, 2, 3, 0, 2, 3]])
    patch_mask = torch.tensor([[True, False, False, False, True, False, False, True, False, False]])
    patches = torch.rand(1, 3, P, P, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).expand(3, -1, -1,
                                                                                                          -1)
    rowcol = torch.zeros(3, 2, dtype=torch.long)
    segments = torch.tensor([[0, 0, 0, 0, 0, 0, 0, 1, 1, 1]])
    x = model.embedding(tokens, in_step, patch_mask, patches, rowcol, segments)[0, [0, 4, 7]]
    torch.testing.assert_close(x[1], x[0])  # the later timestep of unit 0 reads "red" too
    alone = model.embedding(tokens[:, :1], in_step[:, :1], patch_mask[:, :1], patches[:1], rowcol[:1])[0, 0]
    torch.testing.assert_close(x[2], alone)  # unit 1 has no text: as an image with none


def test_the_film_carry_through_the_cache_ignores_a_text_action(tiny_policy):
    """Fed as the agent feeds it (an observation with its separator, then the action's tokens one by one, then the
    next observation), a text action never becomes the condition a later image without text carries: the
    cache gives the full pass's embeddings."""
    from gato.policy.gato_policy import single_token_stream

    model = tiny_policy(text_film=True).double()
    torch.nn.init.normal_(model.embedding.patches.film[1].weight, 0.0, 0.5)
    vocab, P = model.vocab, model.patch_size
    word, other = vocab.tokenizer.encode(" red")[0], vocab.tokenizer.encode(" ball")[0]
    # [patch, word, separator, text action], then the next timestep's [patch, separator] without text
    tokens = torch.tensor([[vocab.pad, word, vocab.separator, other, vocab.pad, vocab.separator]])
    in_step = torch.tensor([[0, 1, 2, 3, 0, 2]])
    patch_mask = torch.tensor([[True, False, False, False, True, False]])
    patches = torch.rand(2, 3, P, P, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rowcol = torch.zeros(2, 2, dtype=torch.long)

    def part(a, b, first_patch, n_patches):
        return {"tokens": tokens[:, a:b], "in_step_pos": in_step[:, a:b], "patch_mask": patch_mask[:, a:b],
                "patches": patches[first_patch:first_patch + n_patches], "patch_rowcol": rowcol[:n_patches]}

    with torch.no_grad():
        full = model.hidden_states(part(0, 6, 0, 2))
        cache = model.new_cache()
        chunks = [model.hidden_states(part(0, 3, 0, 1), cache),
                  model.hidden_states(single_token_stream(tokens[:, 3], 3, "cpu"), cache),
                  model.hidden_states(part(4, 6, 1, 1), cache)]
    torch.testing.assert_close(torch.cat(chunks, 1), full, atol=1e-9, rtol=1e-9)


def test_text_film_ignores_text_after_the_separator(tiny_policy):
    """A text action follows the separator; it must never condition the image it answers."""
    model = tiny_policy(text_film=True).double()
    torch.nn.init.normal_(model.embedding.patches.film[1].weight, 0.0, 0.5)
    vocab, P = model.vocab, model.patch_size
    word, other = vocab.tokenizer.encode(" red")[0], vocab.tokenizer.encode(" ball")[0]
    # one timestep: patch, text, separator, text action; then the next timestep's patch
    tokens = torch.tensor([[vocab.pad, word, vocab.separator, word, vocab.pad]])
    in_step = torch.tensor([[0, 1, 2, 3, 0]])
    patch_mask = torch.tensor([[True, False, False, False, True]])
    patches = torch.rand(2, 3, P, P, dtype=torch.float64, generator=torch.Generator().manual_seed(0)) * 2 - 1
    rowcol = torch.zeros(2, 2, dtype=torch.long)

    def patch_embeddings(toks):
        return model.embedding(toks, in_step, patch_mask, patches, rowcol)[0, [0, 4]]

    base = patch_embeddings(tokens)
    action_changed = tokens.clone()
    action_changed[0, 3] = other
    torch.testing.assert_close(patch_embeddings(action_changed), base, atol=0, rtol=0)
    obs_changed = tokens.clone()
    obs_changed[0, 1] = other
    moved = patch_embeddings(obs_changed)
    assert not torch.allclose(moved[0], base[0])  # its own observation's text does condition it
    # the next timestep has no text: it takes its window's latest (film_carry), or none
    assert not torch.allclose(moved[1], base[1])
    model.embedding.film_carry = False
    torch.testing.assert_close(patch_embeddings(obs_changed)[1], patch_embeddings(tokens)[1], atol=0, rtol=0)


def test_checkpoint_saved_before_text_film_loads_without_it(tmp_path, tiny_policy):
    """config.json files written before ``text_film`` existed describe models without a FiLM."""
    model = tiny_policy(text_film=False)
    model.save_pretrained(tmp_path / "old")
    config = json.loads((tmp_path / "old" / "config.json").read_text())
    del config["text_film"]
    (tmp_path / "old" / "config.json").write_text(json.dumps(config))
    loaded = GatoPolicy.from_pretrained(tmp_path / "old")
    assert loaded.embedding.patches.film is None and not loaded.config.text_film


def test_missing_image_channels_add_nothing_to_the_patch_encoder():
    """A 3-channel picture in an encoder of 8 channels: the 5 channels it lacks are zeros, so the stem's weights on
    them do not change its embedding (with -1 padding they shifted every patch by the same constant)."""
    from gato.policy.embedding import PatchEncoder

    torch.manual_seed(0)
    patches = torch.rand(6, 3, 4, 4) - 0.5
    for pad, unchanged in ((0.0, True), (-1.0, False)):
        encoder = PatchEncoder(channels=8, patch_size=4, mid=8, dim=16, channel_pad=pad)
        before = encoder(patches)
        with torch.no_grad():
            encoder.stem.weight[:, 3:] += 1.0
        assert torch.allclose(encoder(patches), before) == unchanged


def test_image_channel_pad_and_pooled_summary_round_trip_through_a_checkpoint(tmp_path, tiny_policy):
    """Both opt-ins are config: a checkpoint loads back with them, weights and outputs equal."""
    model = tiny_policy(image_channel_pad=0.0, image_summary=True, image_summary_pooled=True)
    assert model.embedding.patches.channel_pad == 0.0 and model.embedding.summary.pooled is not None
    model.save_pretrained(tmp_path / "ckpt")
    loaded = GatoPolicy.from_pretrained(tmp_path / "ckpt").eval()
    assert loaded.embedding.patches.channel_pad == 0.0 and loaded.config.image_summary_pooled
    for (name, a), b in zip(model.state_dict().items(), loaded.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    default = tiny_policy(image_summary=True)  # what every measured run used
    assert default.embedding.patches.channel_pad == -1.0 and default.embedding.summary.pooled is None


# --------------------------------------------------------------------------- (k) one config


def test_a_config_builds_the_same_policy_as_its_keywords(tiny_policy):
    import dataclasses

    from_keywords = tiny_policy(seed=0)
    config = dataclasses.replace(from_keywords.config)
    torch.manual_seed(0)
    from_config = GatoPolicy(config).eval()
    assert from_config.config == config
    for (name, a), b in zip(from_config.state_dict().items(), from_keywords.state_dict().values()):
        assert torch.equal(a, b), name
    # keywords given with a config replace its fields; the config passed in is left alone
    assert GatoPolicy(config, layers=1, heads=4).config == dataclasses.replace(config, layers=1, heads=4)
    assert config == from_keywords.config


def test_defaults_live_in_policy_config_and_dropout_is_zero():
    """GatoPolicy() is PolicyConfig(); the one dropout default is gato train's 0.0 (NEKO's 0.1 is opt-in)."""
    assert GatoPolicy().config == PolicyConfig()
    assert PolicyConfig().dropout == 0.0
    assert all(block.drop.p == 0.0 for block in GatoPolicy(layers=1).transformer.blocks)


def test_unknown_keywords_are_refused_with_the_accepted_ones():
    with pytest.raises(TypeError) as info:
        GatoPolicy(embed_dim=32, n_embd=32)
    message = str(info.value)
    assert "['n_embd']" in message and "pretrained_lm" in message and "image_channels" in message
    with pytest.raises(TypeError, match="first argument is a PolicyConfig"):
        GatoPolicy("cpu")


def test_policy_config_is_importable_where_checkpoints_and_users_import_it():
    from gato.policy import gato_policy

    assert gato_policy.PolicyConfig is PolicyConfig


def test_docstring_names_exactly_the_accepted_keywords():
    """GatoPolicy's docstring lists every keyword it takes: NEKO's and our own."""
    import dataclasses
    import re

    named = set(re.findall(r"``(\w+)``", GatoPolicy.__doc__.split("Any other keyword")[0]))
    assert named == {f.name for f in dataclasses.fields(PolicyConfig)} | {"device", "pretrained_lm"}


def test_config_json_is_the_policy_config(tmp_path, tiny_policy):
    import dataclasses

    model = tiny_policy(mu=100, M=256, tokenizer_model_name=None, image_summary=True, text_film=False)
    model.save_pretrained(tmp_path / "ckpt")
    saved = json.loads((tmp_path / "ckpt" / "config.json").read_text())
    assert saved == dataclasses.asdict(model.config)
    assert PolicyConfig(**saved) == model.config
    assert GatoPolicy.from_pretrained(tmp_path / "ckpt").config == model.config
    assert GatoPolicy.from_pretrained(tmp_path / "ckpt", flash=False).config.flash is False
    with pytest.raises(TypeError, match="unknown keyword"):
        GatoPolicy.from_pretrained(tmp_path / "ckpt", n_embd=32)


def test_training_flags_take_their_defaults_from_policy_config():
    import argparse
    import dataclasses

    from gato.training.arguments import TrainingArgs

    assert TrainingArgs().policy_config() == PolicyConfig()
    flags = [f for f in dataclasses.fields(TrainingArgs) if "policy_field" in f.metadata]
    # lora_r is the one exception: NEKO's --lora switches it on with --lora_r (default 8), see policy_config
    assert sorted(f.metadata["policy_field"] for f in flags) == sorted(
        f.name for f in dataclasses.fields(PolicyConfig) if f.name != "lora_r")
    parser = argparse.ArgumentParser()
    TrainingArgs.add_arguments(parser)
    args = TrainingArgs.from_namespace(parser.parse_args([
        "--sequence_length", "64", "--disable_patch_pos_encoding", "--dropout", "0.1", "--embed_dim", "32",
        "--tokenizer_model_name", "", "--image_summary", "true"]))
    assert args.policy_config() == PolicyConfig(context_len=64, use_patch_pos_encoding=False, dropout=0.1,
                                                embed_dim=32, tokenizer_model_name=None, image_summary=True)


@pytest.mark.parametrize("keywords", [{}, {"image_summary": True, "use_patch_pos_encoding": False},
                                      {"use_pos_encoding": False, "text_film": False, "value_embedding": False}])
def test_weight_decay_groups_are_the_ones_the_trainer_chose_by_name(keywords):
    """optimizer_groups gives exactly the split the trainer made before by matching parameter names: decay on
    every weight matrix and kernel (token table included), none on position tables, norms and biases."""
    from gato.training.arguments import TrainingArgs
    from gato.training.trainer import make_optimizer

    model = GatoPolicy(**keywords)
    names = {id(p): name for name, p in model.named_parameters()}
    decay, no_decay = ([names[id(p)] for p in group["params"]] for group in model.optimizer_groups(0.01))
    by_name = [name for name, p in model.named_parameters()
               if p.dim() >= 2 and not any(k in name for k in ("in_step", "patch_row", "patch_col"))]
    assert decay == by_name
    assert no_decay == [name for name, _ in model.named_parameters() if name not in by_name]
    position_tables = {"embedding.in_step.weight", "embedding.patch_row.weight", "embedding.patch_col.weight"}
    assert position_tables & set(names.values()) <= set(no_decay)
    norms = {f"{name}.{kind}" for name, m in model.named_modules()
             if isinstance(m, (torch.nn.LayerNorm, torch.nn.GroupNorm)) for kind in ("weight", "bias")}
    assert norms and norms <= set(no_decay)
    assert {name for name in names.values() if name.endswith(".bias")} <= set(no_decay)
    transformer_matrices = {f"transformer.{n}" for n, p in model.transformer.named_parameters() if p.dim() == 2}
    assert transformer_matrices and transformer_matrices <= set(decay)
    assert "embedding.tokens.weight" in decay
    groups = make_optimizer(model, TrainingArgs(weight_decay=0.05)).param_groups
    assert [g["weight_decay"] for g in groups] == [0.05, 0.0]
    assert [[names[id(p)] for p in g["params"]] for g in groups] == [decay, no_decay]


def test_rope_rotates_each_pair_by_its_position_angle_and_keeps_only_distances():
    """apply_rope is the rotation of each dimension pair (2j, 2j + 1) by position * base^(-2j/D), and so a query
    and a key's product depends on their distance only (what lets the cache evict without recomputing)."""
    from gato.policy.transformer import apply_rope, rope_rotation

    D = 8
    x = torch.randn(2, 3, 5, D)
    positions = torch.arange(7, 12)
    out = apply_rope(x, rope_rotation(positions, D))
    angles = positions[:, None].double() * 10000.0 ** (-torch.arange(0, D, 2).double() / D)
    x1, x2 = x[..., 0::2].double(), x[..., 1::2].double()
    expected = torch.stack((x1 * angles.cos() - x2 * angles.sin(), x1 * angles.sin() + x2 * angles.cos()), -1)
    torch.testing.assert_close(out.double(), expected.flatten(-2), rtol=0, atol=1e-5)
    q, k = torch.randn(D), torch.randn(D)

    def product(p_q: int, p_k: int) -> float:
        qr = apply_rope(q.view(1, 1, 1, D), rope_rotation(torch.tensor([p_q]), D))
        kr = apply_rope(k.view(1, 1, 1, D), rope_rotation(torch.tensor([p_k]), D))
        return float((qr * kr).sum())

    assert product(9, 4) == pytest.approx(product(105, 100), abs=1e-4)
    assert product(9, 4) != pytest.approx(product(9, 5), abs=1e-3)

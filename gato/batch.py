"""Packed training batches: (B, L) token streams with their patches, positions and targets."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch


@dataclass
class Batch:
    """A batch of token streams, right-padded to one length L.

    tokens (B, L) int64; in_step_pos (B, L) int64, the position inside its timestep;
    patch_mask (B, L) bool, True where the position is an image patch; targets (B, L) bool,
    True where the token is to be predicted; patches (N, C, P, P) float32 in [-1, 1] for the
    N patch positions in row-major order; patch_rowcol (N, 2) int64, each patch's grid place;
    segment_ids (B, L) int64 or None: which packed unit each position belongs to (attention
    stays inside a unit); None when every row is a single unit. inputs (B, L) int64 or None:
    the ids to embed where they differ from ``tokens`` (the actions a DAgger rollout really
    took, or a corrupted action history: see ``ControlTask``'s ``action_history_noise``);
    targets are always read from ``tokens``. loss_weights (B, L) float32 or None: each target's
    weight in the loss (see ``Trainer.sample_batch``); None: every target weighs the same.
    Causal attention makes right-padding harmless: no real token ever attends to it.
    """

    tokens: np.ndarray
    in_step_pos: np.ndarray
    patch_mask: np.ndarray
    targets: np.ndarray
    patches: np.ndarray
    patch_rowcol: np.ndarray
    segment_ids: np.ndarray | None = None
    inputs: np.ndarray | None = None
    loss_weights: np.ndarray | None = None

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def to_torch(self, device="cpu") -> dict:
        """The stream dict that GatoPolicy takes."""
        stream = {
            "tokens": torch.from_numpy(self.tokens).to(device),
            "in_step_pos": torch.from_numpy(self.in_step_pos).to(device),
            "patch_mask": torch.from_numpy(self.patch_mask).to(device),
            "targets": torch.from_numpy(self.targets).to(device),
            "patches": torch.from_numpy(self.patches).to(device),
            "patch_rowcol": torch.from_numpy(self.patch_rowcol).to(device),
        }
        if self.segment_ids is not None:
            stream["segment_ids"] = torch.from_numpy(self.segment_ids).to(device)
        if self.inputs is not None:
            stream["input_tokens"] = torch.from_numpy(self.inputs).to(device)
        if self.loss_weights is not None:
            stream["loss_weights"] = torch.from_numpy(self.loss_weights).to(device)
        return stream

    @staticmethod
    def concat(batches: list[Batch], channel_pad: float) -> Batch:
        """Stack batches of one length (from several tasks); images get the most channels, the ones an image
        lacks filled with ``channel_pad``: the policy's ``image_channel_pad``, with which its patch encoder pads the
        rest (no default, so that no caller pads differently: an image's tokens must not depend on which tasks
        share its batch)."""
        batches = [b for b in batches if len(b)]
        patch_sets = [b.patches for b in batches if b.patches.shape[0]]
        if patch_sets:
            C = max(p.shape[1] for p in patch_sets)
            patch_sets = [np.pad(p, ((0, 0), (0, C - p.shape[1]), (0, 0), (0, 0)), constant_values=channel_pad)
                          for p in patch_sets]
            if len({p.shape[2:] for p in patch_sets}) > 1:
                raise ValueError("tasks in one batch use different patch sizes; give every task the same patch_size")
            patches = np.concatenate(patch_sets)
        else:
            patches = batches[0].patches
        return Batch(
            tokens=np.concatenate([b.tokens for b in batches]),
            in_step_pos=np.concatenate([b.in_step_pos for b in batches]),
            patch_mask=np.concatenate([b.patch_mask for b in batches]),
            targets=np.concatenate([b.targets for b in batches]),
            patches=patches,
            patch_rowcol=np.concatenate([b.patch_rowcol for b in batches]),
            segment_ids=None if all(b.segment_ids is None for b in batches) else np.concatenate(
                [b.segment_ids if b.segment_ids is not None else np.zeros_like(b.tokens) for b in batches]),
            inputs=None if all(b.inputs is None for b in batches) else np.concatenate(
                [b.inputs if b.inputs is not None else b.tokens for b in batches]),
            loss_weights=None if all(b.loss_weights is None for b in batches) else np.concatenate(
                [b.loss_weights if b.loss_weights is not None else b.targets.astype(np.float32) for b in batches]),
        )


def pack(rows: list[list[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]]], layout, length: int,
         pad_id: int) -> Batch:
    """Pack rows of units into a Batch.

    A row holds one or more units back to back; a unit (a window, with its prompt) is a list of
    segments; a segment is (step_tokens (k, S) int, step_patches (k, n_patches, C, P, P)
    float32, step_inputs (k, S) int or None) for k consecutive timesteps laid out by ``layout``
    (a :class:`StepLayout`); step_inputs, where given, are embedded instead of step_tokens
    (``Batch.inputs``).
    When a row holds several units, ``segment_ids`` keeps each unit's attention to itself.
    Rows longer than ``length`` tokens are an internal error.
    """
    B, S = len(rows), layout.tokens_per_step
    tokens = np.full((B, length), pad_id, dtype=np.int64)
    in_step = np.zeros((B, length), dtype=np.int64)
    is_patch = np.zeros((B, length), dtype=bool)
    targets = np.zeros((B, length), dtype=bool)
    segment_ids = np.zeros((B, length), dtype=np.int64)
    has_inputs = any(i is not None for units in rows for unit in units for _, _, i in unit)
    inputs = np.full((B, length), pad_id, dtype=np.int64) if has_inputs else None
    patches, rowcol = [], []
    for b, units in enumerate(rows):
        sample = [seg for unit in units for seg in unit]
        steps = sum(len(t) for t, _, _ in sample)
        n = steps * S
        assert n <= length, f"sample of {n} tokens does not fit {length}"
        tokens[b, :n] = np.concatenate([t for t, _, _ in sample]).reshape(-1)
        if inputs is not None:
            inputs[b, :n] = np.concatenate([t if i is None else i for t, _, i in sample]).reshape(-1)
        in_step[b, :n] = np.tile(np.arange(S), steps)
        is_patch[b, :n] = np.tile(layout.is_patch, steps)
        targets[b, :n] = np.tile(layout.is_target, steps)
        unit_steps = [sum(len(t) for t, _, _ in unit) for unit in units]
        segment_ids[b, :n] = np.repeat(np.arange(len(units)), np.array(unit_steps) * S)
        segment_ids[b, n:] = len(units)  # padding: a segment of its own
        if layout.patches_per_step:
            patches.extend(p.reshape((-1,) + p.shape[2:]) for _, p, _ in sample)
            rowcol.append(np.tile(layout.patch_rowcol, (steps, 1)))
    if patches:
        patch_arr = np.concatenate(patches).astype(np.float32, copy=False)
        rowcol_arr = np.concatenate(rowcol).astype(np.int64)
    else:
        patch_arr = np.zeros((0, 1, 1, 1), np.float32)
        rowcol_arr = np.zeros((0, 2), np.int64)
    packed = any(len(units) > 1 for units in rows)
    return Batch(tokens, in_step, is_patch, targets, patch_arr, rowcol_arr, segment_ids if packed else None, inputs)


@dataclass(frozen=True)
class StepLayout:
    """Which positions of a timestep are patches and which are targets (actions)."""

    tokens_per_step: int
    is_patch: np.ndarray
    is_target: np.ndarray
    patch_rowcol: np.ndarray

    @property
    def patches_per_step(self) -> int:
        """Image patches in one timestep."""
        return int(self.is_patch.sum())

    @classmethod
    def of(cls, codec) -> StepLayout:
        """The layout of a SpaceCodec's timestep: observation, separator, action."""
        S = codec.tokens_per_step
        is_patch = np.zeros(S, bool)
        is_patch[: codec.obs_tokens] = codec.obs_is_patch
        is_target = np.zeros(S, bool)
        is_target[codec.obs_tokens + 1 :] = True
        return cls(S, is_patch, is_target, codec.patch_rowcol.astype(np.int64))


def corrupt_action_inputs(batch: Batch, first_action_pos: int, action_ranges: np.ndarray, p: float,
                          rng: np.random.Generator) -> np.ndarray:
    """``batch``'s inputs with each action token replaced, with probability ``p``, by an id drawn
    uniformly from its own range (``action_ranges`` (K, 2), action token j sitting at in-timestep
    position ``first_action_pos + j``).

    Why: a policy that sees its past actions learns, from smooth expert data, that the next
    action is usually the last one, and when acting it copies its own mistakes forever (the
    "copycat" problem). Unreliable history forces it to read the observations; the targets
    stay clean.
    """
    j = batch.in_step_pos - first_action_pos
    is_action = (j >= 0) & (j < len(action_ranges)) & ~batch.patch_mask
    hit = is_action & (rng.random(batch.tokens.shape) < p)
    lo, hi = action_ranges[j[hit], 0], action_ranges[j[hit], 1]
    inputs = (batch.tokens if batch.inputs is None else batch.inputs).copy()
    inputs[hit] = rng.integers(lo, hi)
    return inputs

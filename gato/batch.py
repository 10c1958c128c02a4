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


@dataclass(frozen=True)
class Run:
    """Consecutive positions of one packed unit: tokens, is_patch, targets (n,) int64, bool, bool;
    in_step_pos (n,) int64; patches (m, C, P, P) float32 and rowcol (m, 2) int64 for its m patch
    positions, in order; inputs (n,) int64 or None: ids embedded instead of ``tokens`` (``Batch.inputs``)."""

    tokens: np.ndarray
    in_step_pos: np.ndarray
    is_patch: np.ndarray
    targets: np.ndarray
    patches: np.ndarray
    rowcol: np.ndarray
    inputs: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.tokens)


def pack_runs(rows: list[list[list[Run]]], length: int, pad_id: int) -> Batch:
    """The one packer, of control windows (:func:`pack`), text windows and image-text examples alike: a Batch
    of ``len(rows)`` rows of ``length`` tokens, each row holding its units back to back and each unit its runs,
    right-padded with ``pad_id`` (in_step_pos 0, no target there). When a row holds several units,
    ``segment_ids`` keeps each unit's attention to itself (padding is a segment of its own); else it is None.
    Raises ValueError when a row's units do not fit ``length``."""
    B = len(rows)
    tokens = np.full((B, length), pad_id, dtype=np.int64)
    in_step = np.zeros((B, length), dtype=np.int64)
    is_patch = np.zeros((B, length), dtype=bool)
    targets = np.zeros((B, length), dtype=bool)
    segment_ids = np.zeros((B, length), dtype=np.int64)
    has_inputs = any(run.inputs is not None for units in rows for unit in units for run in unit)
    inputs = np.full((B, length), pad_id, dtype=np.int64) if has_inputs else None
    patches, rowcol = [], []
    for b, units in enumerate(rows):
        at = 0
        for s, unit in enumerate(units):
            start = at
            for run in unit:
                end = at + len(run)
                if end > length:
                    raise ValueError(f"units of {sum(len(r) for u in units for r in u)} tokens do not fit a row "
                                     f"of {length}")
                tokens[b, at:end], in_step[b, at:end] = run.tokens, run.in_step_pos
                is_patch[b, at:end], targets[b, at:end] = run.is_patch, run.targets
                if inputs is not None:
                    inputs[b, at:end] = run.tokens if run.inputs is None else run.inputs
                if len(run.patches):
                    patches.append(run.patches)
                    rowcol.append(run.rowcol)
                at = end
            segment_ids[b, start:at] = s
        segment_ids[b, at:] = len(units)  # padding: a segment of its own
    if patches:
        patch_arr = np.concatenate(patches).astype(np.float32, copy=False)
        rowcol_arr = np.concatenate(rowcol).astype(np.int64)
    else:
        patch_arr = np.zeros((0, 1, 1, 1), np.float32)
        rowcol_arr = np.zeros((0, 2), np.int64)
    packed = any(len(units) > 1 for units in rows)
    return Batch(tokens, in_step, is_patch, targets, patch_arr, rowcol_arr, segment_ids if packed else None, inputs)


def pack(rows: list[list[list[tuple[np.ndarray, np.ndarray, np.ndarray | None]]]], layout, length: int,
         pad_id: int) -> Batch:
    """Pack rows of control units into a Batch (by :func:`pack_runs`).

    A row holds one or more units back to back; a unit (a window, with its prompt) is a list of
    segments; a segment is (step_tokens (k, S) int, step_patches (k, n_patches, C, P, P)
    float32, step_inputs (k, S) int or None) for k consecutive timesteps laid out by ``layout``
    (a :class:`StepLayout`); step_inputs, where given, are embedded instead of step_tokens
    (``Batch.inputs``).
    When a row holds several units, ``segment_ids`` keeps each unit's attention to itself.
    """
    return pack_runs([[[layout.run(*segment) for segment in unit] for unit in units] for units in rows],
                     length, pad_id)


@dataclass(frozen=True)
class StepLayout:
    """Which positions of a timestep are patches and which are targets (actions); ``in_later`` says which a
    timestep after a run's first keeps (all but the fields read once per window, ``FieldSpec.once``)."""

    tokens_per_step: int
    is_patch: np.ndarray
    is_target: np.ndarray
    patch_rowcol: np.ndarray
    in_later: np.ndarray | None = None

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
        in_later = np.ones(S, bool)
        in_later[: codec.obs_tokens] = ~codec.obs_once
        return cls(S, is_patch, is_target, codec.patch_rowcol.astype(np.int64), None if in_later.all() else in_later)

    def run(self, step_tokens: np.ndarray, step_patches: np.ndarray, step_inputs: np.ndarray | None) -> Run:
        """The :class:`Run` of k consecutive timesteps: step_tokens (k, S), step_patches (k, n_patches, C, P, P),
        step_inputs (k, S) or None. The first timestep is laid out whole, the later ones without the fields read
        once per window; every token keeps its place in the whole timestep as its in-timestep position."""
        k = len(step_tokens)
        if self.patches_per_step:
            patches, rowcol = step_patches.reshape((-1,) + step_patches.shape[2:]), np.tile(self.patch_rowcol, (k, 1))
        else:
            patches, rowcol = np.zeros((0, 1, 1, 1), np.float32), np.zeros((0, 2), np.int64)
        run = Run(np.asarray(step_tokens).reshape(-1), np.tile(np.arange(self.tokens_per_step), k),
                  np.tile(self.is_patch, k), np.tile(self.is_target, k), patches, rowcol,
                  None if step_inputs is None else np.asarray(step_inputs).reshape(-1))
        if self.in_later is None or k < 2:
            return run
        keep = np.tile(self.in_later, k)
        keep[: self.tokens_per_step] = True
        return Run(run.tokens[keep], run.in_step_pos[keep], run.is_patch[keep], run.targets[keep], patches, rowcol,
                   None if run.inputs is None else run.inputs[keep])


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

"""Gato's input embedding: token lookup, one ResNet block per image patch, position codes."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

MAX_PATCH_GRID = 64
"""Patch position tables cover images of up to 64 x 64 patches."""


class PatchEncoder(nn.Module):
    """(N, C, P, P) patches in [-1, 1] -> (N, D): a ResNet v2 block, then a linear map."""

    def __init__(self, channels: int, patch_size: int, mid: int, dim: int):
        super().__init__()
        self.channels = channels
        self.patch_size = patch_size
        groups = 8 if mid % 8 == 0 else 1
        self.stem = nn.Conv2d(channels, mid, 1)
        self.norm1 = nn.GroupNorm(groups, mid)
        self.conv1 = nn.Conv2d(mid, mid, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.out = nn.Linear(mid * patch_size * patch_size, dim)

    def forward(self, patches: torch.Tensor) -> torch.Tensor:
        if patches.shape[1] > self.channels:
            raise ValueError(
                f"images have {patches.shape[1]} channels but the policy's patch encoder takes "
                f"{self.channels}; build GatoPolicy(image_channels={patches.shape[1]})"
            )
        if patches.shape[1] < self.channels:  # fewer channels: pad with 'dark' (-1)
            patches = F.pad(patches, (0, 0, 0, 0, 0, self.channels - patches.shape[1]), value=-1.0)
        x = self.stem(patches)
        h = self.conv1(F.gelu(self.norm1(x)))
        x = x + self.conv2(F.gelu(self.norm2(h)))
        return self.out(x.flatten(1))


class GatoEmbedding(nn.Module):
    """Embeds a token stream: ids through a table, patch positions through the patch
    encoder, plus learned in-timestep positions and patch (row, column) positions."""

    def __init__(self, vocab_size, dim, context_len, patch_size, image_channels, mid_channels,
                 use_pos_encoding=True, use_patch_pos_encoding=True):
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.patches = PatchEncoder(image_channels, patch_size, mid_channels, dim)
        self.in_step = nn.Embedding(context_len, dim) if use_pos_encoding else None
        self.patch_row = nn.Embedding(MAX_PATCH_GRID, dim) if use_patch_pos_encoding else None
        self.patch_col = nn.Embedding(MAX_PATCH_GRID, dim) if use_patch_pos_encoding else None
        self.context_len = context_len

    def forward(self, tokens, in_step_pos, patch_mask, patches, patch_rowcol):
        """tokens, in_step_pos (B, T) int; patch_mask (B, T) bool; patches (N, C, P, P) float
        for the N True places of patch_mask in row-major order; patch_rowcol (N, 2)."""
        x = self.tokens(tokens)
        if patches.shape[0]:
            p = self.patches(patches.to(x.dtype))
            if self.patch_row is not None:
                rc = patch_rowcol.clamp(max=MAX_PATCH_GRID - 1)
                p = p + self.patch_row(rc[:, 0]) + self.patch_col(rc[:, 1])
            x = x.masked_scatter(patch_mask.unsqueeze(-1), p.to(x.dtype))
        if self.in_step is not None:
            x = x + self.in_step(in_step_pos.clamp(max=self.context_len - 1))
        return x

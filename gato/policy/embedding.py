"""Gato's input embedding: token lookup, one ResNet block per image patch, position codes."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

MAX_PATCH_GRID = 64
"""Patch position tables cover images of up to 64 x 64 patches."""

VALUE_FREQUENCIES = 16
"""Sine/cosine pairs describing a continuous bin's value, periods from 2 down to 2/256."""


class ValueEmbedding(nn.Module):
    """A learned, smooth function of a continuous bin's value, added to the bin's own row.

    Gato gives each of the 1024 continuous bins an independent embedding, so neighbouring bins
    only look alike once data has taught it, bin by bin; with a few hundred demonstrations most
    bins are seen rarely and a cloned controller misreads its inputs. A projection of the bin's
    value (and of sines and cosines of it) makes nearby values similar from the start; the table
    rows still learn whatever is particular to a bin. It serves the output head too (the table
    is tied), so the predicted action distribution is smooth over neighbouring bins.
    """

    def __init__(self, bins: int, dim: int):
        super().__init__()
        self.bins = bins
        self.proj = nn.Linear(1 + 2 * VALUE_FREQUENCIES, dim)
        nn.init.normal_(self.proj.weight, 0.0, 0.02)
        nn.init.zeros_(self.proj.bias)

    def forward(self) -> torch.Tensor:
        """(bins, dim) additions for the bins in order (values -1 .. 1)."""
        w = self.proj.weight
        v = torch.linspace(-1.0, 1.0, self.bins, device=w.device, dtype=w.dtype)[:, None]
        freqs = math.pi * 2.0 ** torch.linspace(0.0, 8.0, VALUE_FREQUENCIES, device=w.device, dtype=w.dtype)
        return self.proj(torch.cat([v, torch.sin(v * freqs), torch.cos(v * freqs)], dim=1))


class PatchEncoder(nn.Module):
    """(N, C, P, P) patches in [-1, 1] -> (N, D): a ResNet v2 block, then a linear map.

    With ``film``, each normalisation inside the block is followed by a per-channel scale and
    shift computed from a (N, D) condition (FiLM, Perez et al. 2018), starting as the identity.
    """

    def __init__(self, channels: int, patch_size: int, mid: int, dim: int, film: bool = False,
                 channel_pad: float = -1.0, film_carry: bool = False):
        super().__init__()
        self.film_carry = film_carry
        self.channels, self.channel_pad = channels, channel_pad
        self.patch_size = patch_size
        groups = 8 if mid % 8 == 0 else 1
        self.stem = nn.Conv2d(channels, mid, 1)
        self.norm1 = nn.GroupNorm(groups, mid)
        self.conv1 = nn.Conv2d(mid, mid, 3, padding=1)
        self.norm2 = nn.GroupNorm(groups, mid)
        self.conv2 = nn.Conv2d(mid, mid, 3, padding=1)
        self.out = nn.Linear(mid * patch_size * patch_size, dim)
        # The condition is layer-normed: text embeddings start at the token table's 0.02 scale,
        # and so small a condition leaves the FiLM near the identity for most of a short run
        # (on BabyAI the norm made the difference between no gain and a large one).
        self.film = nn.Sequential(nn.LayerNorm(dim), nn.Linear(dim, 4 * mid)) if film else None
        if self.film is not None:
            nn.init.zeros_(self.film[1].weight)
            nn.init.zeros_(self.film[1].bias)

    def fit_channels(self, patches: torch.Tensor) -> torch.Tensor:
        """Pad patches with fewer channels than the encoder takes (with ``channel_pad``); refuse ones with more."""
        if patches.shape[1] > self.channels:
            raise ValueError(
                f"images have {patches.shape[1]} channels but the policy's patch encoder takes "
                f"{self.channels}; build GatoPolicy(image_channels={patches.shape[1]})"
            )
        if patches.shape[1] < self.channels:
            patches = F.pad(patches, (0, 0, 0, 0, 0, self.channels - patches.shape[1]), value=self.channel_pad)
        return patches

    def forward(self, patches: torch.Tensor, condition: torch.Tensor | None = None) -> torch.Tensor:
        x = self.stem(self.fit_channels(patches))
        scale1 = shift1 = scale2 = shift2 = 0.0
        if self.film is not None and condition is not None:
            scale1, shift1, scale2, shift2 = self.film(condition)[:, :, None, None].chunk(4, dim=1)
        h = self.conv1(F.gelu(self.norm1(x) * (1 + scale1) + shift1))
        x = x + self.conv2(F.gelu(self.norm2(h) * (1 + scale2) + shift2))
        return self.out(x.flatten(1))


class ImageSummary(nn.Module):
    """A whole image -> one (D,) vector added to every patch token of that image.

    Gato embeds each patch on its own, so a decision that depends on where two small things
    sit relative to each other (Breakout's ball and paddle, rows of patches apart) must be found by
    attention among dozens of patch tokens, which a cloned policy had not learnt in 10 CPU
    minutes, while a plain CNN over the same frames predicted the expert's action at 0.85 after
    20 s. This is that CNN: two stride-2 convolutions over the reassembled image, pooled to a fixed
    7x7 grid and read by one linear map (where things are). With ``pooled`` the convolutions get group
    norms and a second linear map reads them max-pooled over the whole image (what is there, wherever
    it is): the grid read must learn every object at every place. As classifiers of easy-vqa's shapes
    (32 images a batch) the grid read named the shape 0.50 of the time after 1,200 batches, the
    max-pooled read 0.94 after 200. Adding the result to every patch of the image puts it in
    whatever mix of patches attention takes, even at initialisation.
    """

    GRID = 7

    def __init__(self, channels: int, dim: int, width: int = 32, pooled: bool = False):
        super().__init__()
        def block(cin: int, cout: int) -> list[nn.Module]:  # group norms only with the pooled read
            norm = [nn.GroupNorm(8, cout)] if pooled else []
            return [nn.Conv2d(cin, cout, 3, stride=2, padding=1), *norm, nn.GELU()]

        self.net = nn.Sequential(*block(channels, width), *block(width, 2 * width))
        self.out = nn.Linear(2 * width * self.GRID * self.GRID, dim)
        self.pooled = nn.Linear(2 * width, dim) if pooled else None
        for read in (self.out, self.pooled):
            if read is not None:
                nn.init.normal_(read.weight, 0.0, 0.02)
                nn.init.zeros_(read.bias)

    def read(self, images: torch.Tensor) -> torch.Tensor:
        """(B, C, H, W) whole images -> (B, D) their summaries."""
        features = self.net(images)
        summary = self.out(F.adaptive_avg_pool2d(features, self.GRID).flatten(1))
        if self.pooled is not None:
            summary = summary + self.pooled(features.amax(dim=(2, 3)))
        return summary

    def forward(self, patches: torch.Tensor, rowcol: torch.Tensor) -> torch.Tensor:
        """patches (N, C, P, P) of whole images in row-major order, each image starting at
        (row, col) = (0, 0); returns (N, D): each patch's image summary. A stream fed to the
        cache in chunks must not cut an image in two (rollouts feed whole observations)."""
        n, c, p = patches.shape[0], patches.shape[1], patches.shape[2]
        starts = ((rowcol[:, 0] == 0) & (rowcol[:, 1] == 0)).nonzero()[:, 0]
        ends = torch.cat([starts[1:], starts.new_tensor([n])])
        # Images of one grid shape are stacked and summarised together.
        shapes = torch.stack([rowcol[ends - 1, 0] + 1, rowcol[ends - 1, 1] + 1], 1)
        out = patches.new_zeros(n, self.out.out_features)
        for rows, cols in torch.unique(shapes, dim=0).tolist():
            first = starts[(shapes[:, 0] == rows) & (shapes[:, 1] == cols)]
            index = first[:, None] + torch.arange(rows * cols, device=patches.device)
            images = patches[index].reshape(-1, rows, cols, c, p, p).permute(0, 3, 1, 4, 2, 5)
            summary = self.read(images.reshape(-1, c, rows * p, cols * p))
            out[index.flatten()] = summary.repeat_interleave(rows * cols, dim=0)
        return out


class SplitTable(nn.Module):
    """A token table whose first ``frozen_rows`` rows never train (LoRA keeps a pretrained LM's text rows).

    The frozen rows are a parameter with ``requires_grad=False``, not rows masked out of the gradient:
    AdamW's decoupled weight decay would still shrink rows that only get zero gradients.
    """

    def __init__(self, weight: torch.Tensor, frozen_rows: int):
        super().__init__()
        self.frozen = nn.Parameter(weight[:frozen_rows].detach().clone(), requires_grad=False)
        self.trainable = nn.Parameter(weight[frozen_rows:].detach().clone())

    @property
    def weight(self) -> torch.Tensor:
        """(rows, dim) the whole table, as nn.Embedding's ``weight``."""
        return torch.cat([self.frozen, self.trainable], dim=0)


class GatoEmbedding(nn.Module):
    """Embeds a token stream: ids through a table, patch positions through the patch
    encoder, plus learned in-timestep positions and patch (row, column) positions.

    ``image_summary``: None, or "grid" / "pooled" for an :class:`ImageSummary` without / with its pooled read;
    ``channel_pad`` fills the channels an image lacks (see PolicyConfig.image_channel_pad).
    ``text_film`` = (end of the text ids, text pad id, separator id) conditions each patch on
    the text of its timestep's observation (see :meth:`timestep_text`); None: patches alone. With
    ``film_carry``, a timestep without observation text takes the latest text of its window.
    """

    def __init__(self, vocab_size, dim, context_len, patch_size, image_channels, mid_channels,
                 use_pos_encoding=True, use_patch_pos_encoding=True, continuous_range: tuple[int, int] | None = None,
                 image_summary: str | None = None, text_film: tuple[int, int, int] | None = None,
                 channel_pad: float = -1.0, film_carry: bool = False):
        super().__init__()
        self.film_carry = film_carry
        self.tokens = nn.Embedding(vocab_size, dim)
        self.continuous_range = continuous_range
        self.values = ValueEmbedding(continuous_range[1] - continuous_range[0], dim) if continuous_range else None
        self.text_film = text_film
        self.patches = PatchEncoder(image_channels, patch_size, mid_channels, dim, film=text_film is not None,
                                    channel_pad=channel_pad)
        self.summary = ImageSummary(image_channels, dim, pooled=image_summary == "pooled") if image_summary else None
        self.in_step = nn.Embedding(context_len, dim) if use_pos_encoding else None
        self.patch_row = nn.Embedding(MAX_PATCH_GRID, dim) if use_patch_pos_encoding else None
        self.patch_col = nn.Embedding(MAX_PATCH_GRID, dim) if use_patch_pos_encoding else None
        # Position codes start at the token table's scale (GPT-2's 0.02): at nn.Embedding's
        # default N(0, 1) they are ~50x larger than any token or value embedding, so what a
        # token is starts as a small ripple on where it sits.
        for table in self.position_tables():
            nn.init.normal_(table.weight, 0.0, 0.02)
        self.context_len = context_len

    def freeze_rows(self, n: int) -> None:
        """From now on the first ``n`` rows of the token table do not train (see :class:`SplitTable`)."""
        self.tokens = SplitTable(self.tokens.weight, n)

    def position_tables(self) -> list[nn.Embedding]:
        """The learned position tables in use (in-timestep, patch row and column): tables of where a token sits,
        which the policy exempts from weight decay."""
        return [table for table in (self.in_step, self.patch_row, self.patch_col) if table is not None]

    def forward(self, tokens, in_step_pos, patch_mask, patches, patch_rowcol, segment_ids=None):
        """tokens, in_step_pos (B, T) int; patch_mask (B, T) bool; patches (N, C, P, P) float
        for the N True places of patch_mask in row-major order; patch_rowcol (N, 2); segment_ids (B, T) or
        None (packed units, see ``gato.batch.Batch``). Returns (B, T, D)."""
        return self.embed(tokens, in_step_pos, patch_mask, patches, patch_rowcol, segment_ids)[0]

    def embed(self, tokens, in_step_pos, patch_mask, patches, patch_rowcol, segment_ids=None, text=None):
        """:meth:`forward`'s embedding, and the text condition to carry into the next chunk of the same
        streams: ``text`` (B, D) is the one carried from the chunks before (a key/value cache keeps it);
        None when nothing is carried (no FiLM carry, or a stream fed whole). Only a chunk with images changes
        it: every timestep of a codec with images holds them, and a chunk without (an action's tokens) holds
        no observation text."""
        x = F.embedding(tokens, self.table())
        if patches.shape[0]:
            patches = self.patches.fit_channels(patches.to(x.dtype))
            condition = None
            if self.text_film:
                condition, text = self.timestep_text(x, tokens, in_step_pos, patch_mask, segment_ids, text)
            p = self.patches(patches, condition)
            if self.summary is not None:
                p = p + self.summary(patches, patch_rowcol)
            if self.patch_row is not None:
                rc = patch_rowcol.clamp(max=MAX_PATCH_GRID - 1)
                p = p + self.patch_row(rc[:, 0]) + self.patch_col(rc[:, 1])
            x = x.masked_scatter(patch_mask.unsqueeze(-1), p.to(x.dtype))
        if self.in_step is not None:
            x = x + self.in_step(in_step_pos.clamp(max=self.context_len - 1))
        return x, text

    def timestep_text(self, x, tokens, in_step_pos, patch_mask, segment_ids=None, carried=None):
        """(N, D): for each patch, the mean embedding of the text tokens of its timestep's
        observation (zero where there are none), the condition of the text FiLM; and (B, D) the condition to
        carry into the next chunk (None without ``film_carry``).

        A timestep starts where ``in_step_pos`` is 0; its observation ends at the separator, so
        a text *action* never conditions the image it answers. The observation's text may come
        after its image (BabyAI's mission does): observations are always fed whole and hold no
        training target, so no prediction sees what it predicts. With ``film_carry``, a timestep whose
        observation holds no text takes that of the latest timestep with text in its packed unit
        (``segment_ids``), or ``carried`` (B, D) from earlier chunks: a window laid out with its mission
        in the first timestep only (``FieldSpec.once``) conditions every image on it.
        """
        text_end, text_pad, separator = self.text_film
        B, T = tokens.shape
        starts = in_step_pos == 0
        begun = torch.cumsum(starts, dim=1)  # timesteps begun in this chunk, up to each token
        slot = torch.arange(B, device=tokens.device)[:, None] * (T + 1) + begun
        # separators seen before each token, minus those seen before its timestep began
        sep = (tokens == separator).long()
        before = torch.cumsum(sep, dim=1) - sep
        at_start = before.new_zeros(B * (T + 1)).index_put_((slot[starts],), before[starts])
        # Tokens before a chunk's first timestep start (slot 0) end a timestep fed earlier: its action, whose
        # separator that chunk held. They are never observation text (in a whole stream slot 0 is empty).
        in_observation = (before == at_start[slot]) & (begun > 0)
        is_text = (tokens < text_end) & (tokens != text_pad) & ~patch_mask & in_observation
        sums = x.new_zeros(B * (T + 1), x.shape[-1]).index_add_(0, slot[is_text], x[is_text])
        counts = x.new_zeros(B * (T + 1)).index_add_(0, slot[is_text], x.new_ones(int(is_text.sum())))
        means = sums / counts.clamp(min=1)[:, None]
        if not self.film_carry:
            return means[slot[patch_mask]], None
        # forward-fill each row's slots from the latest slot with text of the same unit
        means, has = means.view(B, T + 1, -1), (counts > 0).view(B, T + 1)
        if carried is not None:  # slot 0 continues the last timestep of the chunks before
            means[:, 0] = torch.where(has[:, :1], means[:, 0], carried.to(means.dtype))
            has = has.clone()
            has[:, 0] = True
        index = torch.arange(T + 1, device=tokens.device).expand(B, -1)
        latest = torch.where(has, index, torch.full_like(index, -1)).cummax(dim=1).values
        valid = latest >= 0
        if segment_ids is not None:
            unit = segment_ids.new_zeros(B * (T + 1)).index_put_((slot[starts],), segment_ids[starts]).view(B, T + 1)
            unit[:, 0] = segment_ids[:, 0]
            valid &= unit.gather(1, latest.clamp(min=0)) == unit
        filled = means.gather(1, latest.clamp(min=0)[..., None].expand_as(means)) * valid[..., None]
        return filled.reshape(B * (T + 1), -1)[slot[patch_mask]], filled[:, -1]

    def table(self) -> torch.Tensor:
        """(vocab, dim) embedding of every id (the output head uses it too)."""
        if self.values is None:
            return self.tokens.weight
        if torch.is_grad_enabled():
            return self._build_table()
        # Without gradients (rollouts) the table is reused until a parameter changes: a cached
        # rollout asks for it at every generated token. Optimizer steps bump ``_version``.
        parts = [*self.tokens.parameters(), *self.values.parameters()]
        key = (*(p._version for p in parts), parts[0].device, parts[0].dtype)
        if getattr(self, "_table_key", None) != key:
            self._table, self._table_key = self._build_table(), key
        return self._table

    def _build_table(self) -> torch.Tensor:
        w = self.tokens.weight
        lo, hi = self.continuous_range
        return torch.cat([w[:lo], w[lo:hi] + self.values(), w[hi:]], dim=0)

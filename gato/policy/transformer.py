"""A GPT-style causal transformer with rotary or learned positions and a key/value cache.

Rotary position embeddings (RoPE, the default) make attention depend only on the distance between
tokens, so a rollout can drop the oldest cached timesteps when its context is full and keep going
without recomputing anything: the remaining keys stay valid.

Learned absolute positions (``positions="learned"``, GPT-2's table, see gato.policy.pretrained)
number the tokens of the current context 0, 1, 2, ... (each packed segment from 0). When the
cache slides (``drop_oldest``), every kept token's position changes, so its keys are stale: the
next feed re-runs the kept tokens (the cache keeps their input embeddings) at their new
positions. Cached and uncached generation over the same context then agree; the price is a
forward pass over the whole context at each slide, where RoPE pays nothing.
"""

from __future__ import annotations

import math
from contextlib import nullcontext
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn


@lru_cache(maxsize=16)
def _inverse_frequencies(head_dim: int, device: torch.device, base: float) -> torch.Tensor:
    # Computed once: a cached rollout asks for the tables at every generated token. Made outside
    # inference mode, so a table first built during a rollout also serves training.
    with torch.inference_mode(False):
        return 1.0 / base ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim)


def rope_rotation(positions: torch.Tensor, head_dim: int, base: float = 10000.0) -> torch.Tensor:
    """cos + i sin (T, head_dim/2), complex, of the angles of integer ``positions`` (T,)."""
    inv = _inverse_frequencies(head_dim, positions.device, base)
    angles = positions.float()[:, None] * inv[None, :]
    return torch.complex(angles.cos(), angles.sin())


def apply_rope(x: torch.Tensor, rotation: torch.Tensor) -> torch.Tensor:
    """Rotate (B, H, T, D) queries or keys by their positions: each pair of dimensions (2j, 2j + 1), read as
    one complex number, times ``rotation`` (one complex product: under half the time of slicing the pairs
    apart and stacking them back, forward and backward)."""
    pairs = torch.view_as_complex(x.float().contiguous().unflatten(-1, (-1, 2)))
    return torch.view_as_real(pairs * rotation).flatten(-2).to(x.dtype)


class KVCache:
    """Per-layer keys and values (B, H, T, D) of everything fed so far, and its positions.

    They live in preallocated buffers of ``capacity`` tokens: feeding a token writes into its
    slot instead of copying the whole cache (what ``torch.cat`` would do at every step), and
    dropping the oldest tokens only moves a start index. When the buffer's end is reached, the
    live tokens are moved back to its front, once per ``capacity - context`` tokens fed.
    """

    def __init__(self, layers: int, capacity: int = 0, keep_inputs: bool = False):
        self._k: list = [None] * layers
        self._v: list = [None] * layers
        self.capacity = capacity
        self.start = self.end = 0
        self.next_position = 0
        # Learned positions: the inputs (B, 1, T, D) fed so far, to re-run them once a slide has
        # moved their positions (``shifted``).
        self.keep_inputs = keep_inputs
        self._x = None
        self.shifted = False
        # (B, D) the text FiLM's condition carried to the next chunk (GatoEmbedding.embed), or None
        self.text = None

    @property
    def length(self) -> int:
        """Number of cached tokens."""
        return self.end - self.start

    @property
    def keys(self) -> list:
        """Per-layer cached keys (B, H, length, D), or Nones before anything was fed."""
        return [None if k is None else k[:, :, self.start : self.end] for k in self._k]

    @property
    def values(self) -> list:
        """Per-layer cached values (B, H, length, D), or Nones before anything was fed."""
        return [None if v is None else v[:, :, self.start : self.end] for v in self._v]

    @property
    def inputs(self) -> torch.Tensor | None:
        """(B, length, D) transformer inputs of the cached tokens (only with ``keep_inputs``)."""
        return None if self._x is None else self._x[:, 0, self.start : self.end]

    def drop_oldest(self, n: int) -> None:
        """Forget the ``n`` oldest tokens (RoPE keeps the others valid; learned positions re-run them)."""
        n = max(0, min(n, self.length))
        self.start += n
        self.shifted = self.shifted or n > 0

    def clear(self) -> None:
        """Forget every token (the buffers stay allocated for reuse); positions start again at 0."""
        self.start = self.end = self.next_position = 0
        self.shifted = False
        self.text = None

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows ``rows`` (indices, in the order given): the others' episodes have ended."""
        select = lambda b: None if b is None else b.index_select(0, rows.to(b.device))  # noqa: E731
        self._k, self._v, self._x = [select(b) for b in self._k], [select(b) for b in self._v], select(self._x)
        self.text = select(self.text)

    def _buffers(self) -> list:
        return [b for b in self._k + self._v + [self._x] if b is not None]

    def reserve(self, n: int) -> None:
        """Make room for ``n`` more tokens at the end of every layer's buffer."""
        if self._k[0] is None or self.end + n <= self._k[0].shape[2]:
            return
        if self.length + n <= self._k[0].shape[2]:  # move the live tokens to the front
            for b in self._buffers():
                b[:, :, : self.length] = b[:, :, self.start : self.end].clone()
        else:  # a bigger buffer (only when a chunk outgrows the capacity asked for)
            size = max(2 * self.length + n, self.capacity)

            def grow(b):
                grown = b.new_empty(b.shape[:2] + (size,) + b.shape[3:])
                grown[:, :, : self.length] = b[:, :, self.start : self.end]
                return grown

            self._k, self._v = [grow(b) for b in self._k], [grow(b) for b in self._v]
            self._x = None if self._x is None else grow(self._x)
        self.start, self.end = 0, self.length

    def write(self, layer: int, k: torch.Tensor, v: torch.Tensor):
        """Store this layer's new keys and values after the cached ones (room made by
        :meth:`reserve`); returns every cached key and value of the layer, new ones included."""
        T = k.shape[2]
        if self._k[layer] is None:
            size = max(self.capacity, self.end + T)
            self._k[layer] = k.new_empty(k.shape[:2] + (size,) + k.shape[3:])
            self._v[layer] = v.new_empty(v.shape[:2] + (size,) + v.shape[3:])
        self._k[layer][:, :, self.end : self.end + T] = k
        self._v[layer][:, :, self.end : self.end + T] = v
        return self._k[layer][:, :, self.start : self.end + T], self._v[layer][:, :, self.start : self.end + T]

    def write_inputs(self, x: torch.Tensor) -> None:
        """Store the (B, T, D) inputs about to be fed (room made by :meth:`reserve`), if ``keep_inputs``."""
        if not self.keep_inputs:
            return
        T = x.shape[1]
        if self._x is None:
            size = max(self.capacity, self.end + T)
            self._x = x.new_empty(x.shape[:1] + (1, size) + x.shape[2:])
        self._x[:, 0, self.end : self.end + T] = x

    def advance(self, n: int) -> None:
        """Count the ``n`` tokens every layer has just written."""
        self.end += n
        self.next_position += n


class Attention(nn.Module):
    """Multi-head causal self-attention through PyTorch's scaled_dot_product_attention."""

    def __init__(self, dim: int, heads: int):
        super().__init__()
        if dim % heads:
            raise ValueError(f"embed_dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x, rotation, cache: KVCache | None, layer: int, mask: torch.Tensor | None = None):
        B, T, D = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, D // self.heads).permute(2, 0, 3, 1, 4)
        if rotation is not None:  # None: learned positions, added at the input
            q, k = apply_rope(q, rotation), apply_rope(k, rotation)
        if cache is not None:
            k, v = cache.write(layer, k, v)
        # mask: None (plain causal), or built once by Transformer.forward for packed segments
        # or for new queries that also see cached keys.
        causal = mask is None
        # No dropout on attention weights: with it, SDPA falls back to materialising every
        # (T, T) matrix (3x slower, 2x the memory on CPU). Dropout stays on the residual branches.
        y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=causal and T > 1)
        return self.proj(y.transpose(1, 2).reshape(B, T, D))


class MLP(nn.Module):
    """Feed-forward block, 'gelu' (tanh approximation: GPT-2's gelu_new) or 'geglu' (a gated GELU unit)."""

    def __init__(self, dim: int, activation: str):
        super().__init__()
        if activation not in ("gelu", "geglu"):
            raise ValueError(f"activation_fn must be 'gelu' or 'geglu', got {activation!r}")
        self.gated = activation == "geglu"
        hidden = 4 * dim
        self.fc = nn.Linear(dim, 2 * hidden if self.gated else hidden)
        self.proj = nn.Linear(hidden, dim)

    def forward(self, x):
        h = self.fc(x)
        if self.gated:
            a, b = h.chunk(2, dim=-1)
            h = a * F.gelu(b)
        else:
            h = F.gelu(h, approximate="tanh")
        return self.proj(h)


class Block(nn.Module):
    """Pre-norm transformer block (the GPT-2 layout, so GPT-2 weights load into it)."""

    def __init__(self, dim, heads, dropout, activation, eps: float = 1e-5):
        super().__init__()
        self.ln_1 = nn.LayerNorm(dim, eps=eps)
        self.attn = Attention(dim, heads)
        self.ln_2 = nn.LayerNorm(dim, eps=eps)
        self.mlp = MLP(dim, activation)
        self.drop = nn.Dropout(dropout)

    def forward(self, x, rotation, cache, layer, mask=None):
        x = x + self.drop(self.attn(self.ln_1(x), rotation, cache, layer, mask))
        return x + self.drop(self.mlp(self.ln_2(x)))


class Transformer(nn.Module):
    """Stack of blocks plus a final LayerNorm. Input and output: (B, T, D) embeddings.

    ``positions``: "rope" (rotary, in attention) or "learned" (a ``position_rows``-row table ``wpe``
    added at the input, as GPT-2's; see the module docstring for the cache).
    """

    def __init__(self, dim: int, layers: int, heads: int, dropout: float, activation: str, flash: bool = True,
                 positions: str = "rope", position_rows: int = 0, eps: float = 1e-5):
        super().__init__()
        self.blocks = nn.ModuleList(Block(dim, heads, dropout, activation, eps) for _ in range(layers))
        self.ln_f = nn.LayerNorm(dim, eps=eps)
        self.head_dim = dim // heads
        self.flash = flash
        self.drop = nn.Dropout(dropout)
        if positions not in ("rope", "learned"):
            raise ValueError(f"positions must be 'rope' or 'learned', got {positions!r}")
        self.wpe = nn.Embedding(position_rows, dim) if positions == "learned" else None

    def new_cache(self, capacity: int = 0) -> KVCache:
        """An empty cache for :meth:`forward`, preallocated for ``capacity`` tokens."""
        return KVCache(len(self.blocks), capacity, keep_inputs=self.wpe is not None)

    def _kernels(self):
        if self.flash:
            return nullcontext()
        from torch.nn.attention import SDPBackend, sdpa_kernel

        return sdpa_kernel(SDPBackend.MATH)

    def forward(self, x: torch.Tensor, cache: KVCache | None = None,
                segment_ids: torch.Tensor | None = None) -> torch.Tensor:
        """(B, T, D) -> (B, T, D). With a cache, ``x`` continues what was fed before; with
        ``segment_ids`` (B, T), a position attends only to earlier positions of its segment."""
        mask = None
        T = out_len = x.shape[1]
        if cache is not None and self.wpe is not None and cache.shifted:
            # learned positions after a slide: the kept tokens' keys were computed at old positions
            x = torch.cat([cache.inputs, x], dim=1)
            cache.clear()
            T = x.shape[1]
        if segment_ids is not None:
            if cache is not None:
                raise ValueError("packed sequences (segment_ids) cannot be fed through a cache")
            causal = torch.ones(T, T, dtype=torch.bool, device=x.device).tril()
            mask = ((segment_ids[:, :, None] == segment_ids[:, None, :]) & causal)[:, None]
        if cache is not None:
            cache.reserve(T)
            if cache.length and T > 1:
                # New queries see every cached key; among themselves they are causal.
                S = cache.length + T
                mask = torch.ones(T, S, dtype=torch.bool, device=x.device).tril(S - T)
        if self.wpe is None:
            start = cache.next_position if cache is not None else 0
            rotation = rope_rotation(torch.arange(start, start + T, device=x.device), self.head_dim)
        else:
            if cache is not None:
                cache.write_inputs(x)
            x = x + self.wpe(self._learned_positions(x, cache, segment_ids))
            rotation = None
        x = self.drop(x)
        with self._kernels():
            for i, block in enumerate(self.blocks):
                x = block(x, rotation, cache, i, mask)
        if cache is not None:
            cache.advance(T)
        return self.ln_f(x[:, T - out_len :])

    def _learned_positions(self, x: torch.Tensor, cache: KVCache | None, segment_ids) -> torch.Tensor:
        """Positions in the current context: after the cached tokens, or from each packed segment's start."""
        T = x.shape[1]
        start = cache.length if cache is not None else 0
        positions = torch.arange(start, start + T, device=x.device)
        if segment_ids is not None:
            new = torch.ones_like(segment_ids, dtype=torch.bool)
            new[:, 1:] = segment_ids[:, 1:] != segment_ids[:, :-1]
            first = torch.where(new, positions, 0).cummax(dim=1).values
            positions = positions - first
        if start + T > self.wpe.num_embeddings:
            raise ValueError(f"{start + T} tokens in context exceed the {self.wpe.num_embeddings} learned positions; "
                             "feed at most that many (GatoPolicy.extend drops the oldest for you)")
        return positions


def init_weights(module: nn.Module, layers: int) -> None:
    """GPT-2 style initialisation: N(0, 0.02), residual projections scaled by depth."""
    for name, p in module.named_parameters():
        if p.dim() >= 2:
            std = 0.02 / math.sqrt(2 * layers) if name.endswith("proj.weight") else 0.02
            nn.init.normal_(p, 0.0, std)
        elif name.endswith("bias"):
            nn.init.zeros_(p)

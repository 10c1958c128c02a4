"""GatoPolicy: embeds a token stream, runs the causal transformer, predicts next tokens.

The policy knows token streams, never environments. A stream is a dict of tensors (see
:class:`gato.batch.Batch`): ``tokens`` and ``in_step_pos`` (B, T), ``patch_mask`` (B, T),
``patches`` (N, C, P, P) and ``patch_rowcol`` (N, 2) for the image patches, and for training
``targets`` (B, T), True where a token is to be predicted (actions, text), and optionally
``segment_ids`` (B, T) when a row packs several sequences that must not see each other.
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict, fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gato.policy.config import PolicyConfig  # also imported from here, as before it had a module of its own
from gato.policy.embedding import GatoEmbedding
from gato.policy.transformer import KVCache, Transformer, init_weights
from gato.vocab import Vocab

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "model.safetensors"
TOKENIZER_FILE = "tokenizer.json"
CARD_FILE = "README.md"
TASKS_FILE = "tasks.json"
"""Where a checkpoint keeps the specs of the tasks it was trained on (``gato.tasks.registry.load_tasks`` reads them;
the model card lists them)."""


class CheckpointError(ValueError):
    """A checkpoint that is missing, truncated, or does not fit the model."""


class GatoPolicy(nn.Module):
    """A Gato-style policy over the shared token vocabulary.

    Built from a :class:`PolicyConfig` (None: every default), or from keywords naming its fields, as NEKO's
    notebook does; keywords given with a config replace those fields. The keywords accepted, exactly:

    - NEKO's: ``device``, ``embed_dim``, ``layers``, ``heads``, ``dropout``, ``mu``, ``M``, ``patch_size``,
      ``resid_mid_channels``, ``continuous_tokens``, ``discrete_tokens``, ``context_len``,
      ``use_patch_pos_encoding``, ``use_pos_encoding``, ``activation_fn``, ``pretrained_lm``, ``flash``,
      ``tokenizer_model_name``, ``pad_seq``;
    - our own: ``image_channels``, ``image_channel_pad``, ``value_embedding``, ``image_summary``,
      ``image_summary_pooled``, ``text_film``, ``film_carry``, ``positions``, ``max_positions``, ``layer_norm_eps``,
      ``lora_r``, ``lora_alpha``, ``lora_dropout``, ``task_tokens``.

    Any other keyword raises TypeError. Each one's meaning and default is documented on PolicyConfig; unlike
    NEKO's, the dropout default is 0.0. ``pretrained_lm`` names a local Hugging Face GPT-2 directory (with its
    tokenizer.json) that the policy starts from (see :mod:`gato.policy.pretrained`): its blocks, token
    embeddings (the text rows), learned positions (RoPE is off) and tokenizer; its sizes, positions, epsilon
    and tokenizer directory replace those fields of ``self.config``, so config.json rebuilds the model without
    it. ``lora_r > 0`` adds LoRA adapters and freezes the rest of the transformer and the text rows (see
    :mod:`gato.policy.lora`).
    """

    def __init__(self, config: PolicyConfig | None = None, device="cpu", **keywords):
        super().__init__()
        if config is not None and not isinstance(config, PolicyConfig):
            raise TypeError(f"GatoPolicy's first argument is a PolicyConfig, got {config!r} (pass device=...)")
        pretrained_lm = keywords.pop("pretrained_lm", None)
        # from_pretrained's: the tokenizer read from the checkpoint's own tokenizer.json (not a public keyword)
        tokenizer_dir = keywords.pop("_tokenizer_dir", None)
        accepted = [f.name for f in fields(PolicyConfig)]
        unknown = sorted(set(keywords) - set(accepted))
        if unknown:
            raise TypeError(f"GatoPolicy got unknown keyword(s) {unknown}; it accepts device, pretrained_lm and "
                            f"the PolicyConfig fields: {', '.join(accepted)}")
        config = replace(config if config is not None else PolicyConfig(), **keywords)
        if pretrained_lm:
            config = _with_gpt2(config, pretrained_lm)
        self.config = config
        self.vocab, self._tokenizer_json = _policy_vocab(config, tokenizer_dir)
        self.embed_dim = config.embed_dim
        self.context_len = config.context_len
        self.patch_size = config.patch_size
        continuous = (self.vocab.continuous_offset, self.vocab.continuous_offset + self.vocab.continuous_tokens)
        summary = ("pooled" if config.image_summary_pooled else "grid") if config.image_summary else None
        self.embedding = GatoEmbedding(self.vocab.size, config.embed_dim, config.context_len, config.patch_size,
                                       config.image_channels, config.resid_mid_channels, config.use_pos_encoding,
                                       config.use_patch_pos_encoding, continuous if config.value_embedding else None,
                                       summary,
                                       (self.vocab.text_tokens, self.vocab.tokenizer.pad_id, self.vocab.separator)
                                       if config.text_film else None, config.image_channel_pad,
                                       config.film_carry)
        self.transformer = Transformer(config.embed_dim, config.layers, config.heads, config.dropout,
                                       config.activation_fn, config.flash, config.positions, config.position_rows,
                                       config.layer_norm_eps)
        init_weights(self.transformer, config.layers)
        nn.init.normal_(self.embedding.tokens.weight, 0.0, 0.02)
        if pretrained_lm:
            from gato.policy.pretrained import load_gpt2

            load_gpt2(self, pretrained_lm)
        if config.lora_r:
            from gato.policy.lora import add_lora

            add_lora(self, config.lora_r, config.lora_alpha, config.lora_dropout)
        self.to(device)

    @property
    def device(self) -> torch.device:
        """Where the parameters live."""
        return next(self.parameters()).device

    def optimizer_groups(self, weight_decay: float) -> list[dict]:
        """AdamW parameter groups, as nanoGPT's configure_optimizers: ``weight_decay`` on every weight matrix and
        convolution kernel (the token table included), none on biases and norm gains (the 1-D parameters) nor on
        the position tables (the embedding's, and the transformer's learned positions: decay would pull positions
        towards looking alike). Frozen parameters (``requires_grad=False``: LoRA's) are in no group."""
        tables = self.embedding.position_tables() + [t for t in (self.transformer.wpe,) if t is not None]
        exempt = {id(table.weight) for table in tables}
        decay, no_decay = [], []
        for p in self.parameters():
            if p.requires_grad:
                (decay if p.dim() >= 2 and id(p) not in exempt else no_decay).append(p)
        return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]

    # -- training ------------------------------------------------------------------------

    def _trim(self, stream: dict) -> dict:
        """Drop trailing columns that are padding in every row (unless pad_seq)."""
        if self.config.pad_seq:
            return stream
        real = (stream["tokens"] != self.vocab.pad) | stream["patch_mask"]
        last = int(real.any(0).nonzero().max()) + 1 if real.any() else 1
        if last == stream["tokens"].shape[1]:
            return stream
        out = dict(stream)
        for key in ("tokens", "input_tokens", "in_step_pos", "patch_mask", "targets", "segment_ids", "loss_weights"):
            if key in out:
                out[key] = out[key][:, :last]
        return out

    def hidden_states(self, stream: dict, cache: KVCache | None = None) -> torch.Tensor:
        """(B, T, D) final hidden states of a stream (continuing ``cache`` if given). The ids
        embedded are ``input_tokens`` when the stream has them (training with a corrupted
        action history), else ``tokens``."""
        x, text = self.embedding.embed(stream.get("input_tokens", stream["tokens"]), stream["in_step_pos"],
                                       stream["patch_mask"], stream["patches"], stream["patch_rowcol"],
                                       stream.get("segment_ids"), None if cache is None else cache.text)
        if cache is not None:
            cache.text = text
        return self.transformer(x, cache, stream.get("segment_ids"))

    def logits(self, hidden: torch.Tensor) -> torch.Tensor:
        """Logits over the whole vocabulary; the output head shares the token table."""
        return hidden @ self.embedding.table().t()

    def forward(self, stream: dict, compute_loss: bool = True):
        """Returns (logits, loss) at the predicted positions only.

        Logits are computed only where the next token is a target, so the head never runs on
        observation positions: (N, vocab) for the N targets in the batch. The loss is the mean
        cross-entropy over the targets, weighted by ``stream["loss_weights"]`` when given.
        """
        if stream["tokens"].shape[1] > self.context_len:
            raise ValueError(f"stream of {stream['tokens'].shape[1]} tokens exceeds context_len {self.context_len}")
        stream = self._trim(stream)
        hidden = self.hidden_states(stream)
        predict = stream["targets"][:, 1:]
        logits = self.logits(hidden[:, :-1][predict])
        loss = None
        if compute_loss:
            target_ids = stream["tokens"][:, 1:][predict]
            if not len(target_ids):
                loss = logits.sum() * 0.0
            elif "loss_weights" in stream:
                w = stream["loss_weights"][:, 1:][predict].float()
                loss = (F.cross_entropy(logits.float(), target_ids, reduction="none") * w).sum() / w.sum().clamp_min(
                    torch.finfo(w.dtype).tiny)
            else:
                loss = F.cross_entropy(logits.float(), target_ids)
        return logits, loss

    # -- cached inference ----------------------------------------------------------------

    def new_cache(self, cached: bool = True) -> KVCache | FullContext:
        """An empty key/value cache for :meth:`extend` and :meth:`generate`; ``cached=False``: a
        :class:`FullContext`, the uncached reference path."""
        if not cached:
            return FullContext()
        # Room for half a context beyond a full one: live tokens move back to the front of
        # the buffers once per half context of tokens fed.
        return self.transformer.new_cache(capacity=self.context_len + self.context_len // 2)

    @torch.no_grad()
    def extend(self, cache: KVCache | FullContext, stream: dict) -> torch.Tensor:
        """Feed a stream chunk through the cache; returns the last position's hidden (B, D).

        When the cache would outgrow the context, its oldest tokens are dropped first. A
        :class:`FullContext` instead keeps the chunk and re-runs the last ``context_len`` tokens fed.
        """
        if stream["tokens"].shape[1] > self.context_len:
            raise ValueError(f"a chunk of {stream['tokens'].shape[1]} tokens cannot fit context_len {self.context_len}")
        if isinstance(cache, FullContext):
            cache.chunks.append(stream)
            return self.hidden_states(concat_streams(cache.chunks, self.context_len))[:, -1]
        overflow = cache.length + stream["tokens"].shape[1] - self.context_len
        if overflow > 0:
            cache.drop_oldest(overflow)
        return self.hidden_states(stream, cache)[:, -1]

    @torch.no_grad()
    def generate(self, cache: KVCache | FullContext, stream: dict, ranges: torch.Tensor, first_pos: int,
                 deterministic: bool = True, generator: torch.Generator | None = None,
                 masks: list | None = None, temperature: float = 1.0, stop: int | None = None) -> torch.Tensor:
        """The one decoding loop, of actions (``gato.agent``) and text (``gato.language``) alike.

        Feed ``stream`` (ending where the first new token goes), then produce one token per
        row of ``ranges`` ((K, 2) [lo, hi) id ranges), each restricted to its range and fed
        back in. The last produced token is not fed: pass it at the start of the next stream.
        ``masks`` (optional, K entries): None or a bool tensor over token j's range, the ids it
        may take (a text action's charset; ``SpaceCodec.action_masks``; text: all but pad).
        Tokens are argmax (``deterministic``) or sampled from softmax(logits / ``temperature``) with
        ``generator``. ``stop`` (text's eos): a row that produced it produces only it from then on,
        and decoding ends when every row has; the rest of the output is ``stop``.

        Returns (B, K) token ids. ``first_pos`` is the in-timestep position of the first one.
        """
        hidden = self.extend(cache, stream)
        B = hidden.shape[0]
        out = torch.full((B, len(ranges)), -1 if stop is None else stop, dtype=torch.long, device=hidden.device)
        done = torch.zeros(B, dtype=torch.bool, device=hidden.device)
        table = self.embedding.table()
        for j, (lo, hi) in enumerate(ranges.tolist()):
            # Only the allowed ids' logits: the same choice as masking the full head, less work.
            logits = (hidden @ table[lo:hi].t()).float()
            if masks is not None and masks[j] is not None:
                logits = logits.masked_fill(~masks[j].to(logits.device), float("-inf"))
            if deterministic:
                tok = logits.argmax(-1) + lo
            else:
                probs = F.softmax(logits / temperature, -1)
                on = generator.device if generator is not None else probs.device  # a CPU generator for a GPU policy
                tok = torch.multinomial(probs.to(on), 1, generator=generator)[:, 0].to(hidden.device) + lo
            if stop is not None:
                tok = torch.where(done, torch.full_like(tok, stop), tok)
                done |= tok == stop
            out[:, j] = tok
            if j + 1 == len(ranges) or (stop is not None and bool(done.all())):
                break
            hidden = self.extend(cache, single_token_stream(tok, first_pos + j, self.device))
        return out

    # -- saving --------------------------------------------------------------------------

    def save_pretrained(self, directory: str | os.PathLike, extra: dict | None = None) -> None:
        """Write config.json, model.safetensors and a README.md model card (plus ``extra`` JSON files, name -> data,
        and the tokenizer's tokenizer.json when it is a Hugging Face one) into ``directory``, a folder the Hugging
        Face Hub takes as is (the card's evaluation table: the last evaluation of ``extra["history.json"]``),
        so that a kill at any instant leaves a complete checkpoint there: the previous one or the new one.

        How: everything is written into a hidden temporary directory beside ``directory`` and flushed to
        disk; then :func:`gato.atomic.replace_dir` swaps the two names in one atomic step (Linux's
        renameat2 RENAME_EXCHANGE), and the previous checkpoint, now under the temporary name, is deleted.
        ``directory`` stays a plain directory (copy it, delete it, pass its path as before). Where the atomic
        exchange is missing (another OS, NFS) the swap takes two renames, and a kill between them leaves the
        previous checkpoint in a hidden sibling that :meth:`from_pretrained` loads instead, and the next
        save restores first (see :mod:`gato.atomic`)."""
        from safetensors.torch import save_file

        from gato import atomic

        with atomic.replacing_dir(directory) as tmp:
            state = {k: v.detach().cpu().contiguous() for k, v in self.state_dict().items()}
            save_file(state, str(tmp / WEIGHTS_FILE))
            (tmp / CONFIG_FILE).write_text(json.dumps(asdict(self.config), indent=2))
            if self._tokenizer_json is not None:  # self-contained: the tokenizer's folder may go away
                (tmp / TOKENIZER_FILE).write_text(self._tokenizer_json, encoding="utf-8")
            for name, data in (extra or {}).items():
                (tmp / name).write_text(json.dumps(data, indent=2))
            (tmp / CARD_FILE).write_text(self._card(Path(directory), extra or {}), encoding="utf-8")

    @staticmethod
    def _card(directory: Path, extra: dict) -> str:
        """The README.md model card (gato.model_card) from the task specs and history among ``extra``."""
        from gato.model_card import model_card

        name = directory.parent.name if directory.name == "checkpoint" else directory.name
        return model_card(name or "neko-gato", extra.get(TASKS_FILE), extra.get("history.json"))

    @classmethod
    def from_pretrained(cls, directory: str | os.PathLike, device="cpu", **overrides) -> GatoPolicy:
        """Rebuild a policy saved by :meth:`save_pretrained` (safetensors only, nothing unpickled): config.json is
        its PolicyConfig; ``overrides`` replace fields of it (e.g. ``flash=False``). A Hugging Face tokenizer is
        read from the checkpoint's own tokenizer.json (config.json's tokenizer_model_name names where it came
        from, which may be gone). A damaged checkpoint raises CheckpointError."""
        from gato.atomic import resolve_dir

        directory = resolve_dir(directory)  # a swap killed halfway without atomic exchange: the previous one
        config = _read_config(directory / CONFIG_FILE)
        if (directory / TOKENIZER_FILE).is_file() and "tokenizer_model_name" not in overrides:
            overrides = {**overrides, "_tokenizer_dir": directory}
        try:
            if not overrides.get("pretrained_lm"):
                # built on the meta device first (nothing allocated): a damaged config.json that asks for a
                # huge model is caught by the shapes in model.safetensors' header before memory runs out
                _check_shapes(cls(config, device="meta", **overrides), directory / WEIGHTS_FILE)
            model = cls(config, device=device, **overrides)
        except (ValueError, RuntimeError, AssertionError, ZeroDivisionError, MemoryError) as e:
            raise CheckpointError(f"{directory / CONFIG_FILE} describes no model that can be built ({e}); "
                                  "the checkpoint is damaged: re-save or re-train it") from e
        model.load_weights(directory)
        return model

    def load_weights(self, directory: str | os.PathLike) -> None:
        """Load model.safetensors from ``directory`` into this policy, checking every shape."""
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        path = Path(directory) / WEIGHTS_FILE
        _check_shapes(self, path)
        try:
            state = load_file(str(path), device=str(self.device))
        except (SafetensorError, OSError, ValueError) as e:
            raise CheckpointError(f"{path} cannot be read ({e}); the file is truncated or damaged. "
                                  "Re-save or re-train the checkpoint.") from e
        self.load_state_dict(state)


def _read_config(config_path: Path) -> PolicyConfig:
    """The PolicyConfig a checkpoint's config.json holds; CheckpointError if it is missing or damaged."""
    if not config_path.is_file():
        raise CheckpointError(
            f"no checkpoint at {config_path.parent}: {CONFIG_FILE} is missing. Pass the directory that "
            "GatoPolicy.save_pretrained or `gato train` wrote (it holds config.json and model.safetensors)."
        )
    try:
        config = json.loads(config_path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{config_path} is not valid JSON ({e}); the checkpoint is damaged") from e
    if not isinstance(config, dict):
        raise CheckpointError(f"{config_path} holds {type(config).__name__}, not an object of settings; "
                              "the checkpoint is damaged")
    known = {f.name: f for f in fields(PolicyConfig)}
    unknown = set(config) - set(known)
    if unknown:
        raise CheckpointError(f"{config_path} has unknown fields {sorted(unknown)}; "
                              "it is not a neko-gato checkpoint")
    config.setdefault("text_film", False)  # written before the FiLM existed
    config.setdefault("film_carry", False)  # written before windows read their mission once
    default = PolicyConfig()
    for name, value in config.items():
        expected = getattr(default, name)
        if not _fits(value, expected, nullable=name == "tokenizer_model_name"):
            raise CheckpointError(f"{config_path}: {name} is {value!r}, not a {type(expected).__name__}; "
                                  "the checkpoint is damaged")
    return PolicyConfig(**config)


def _fits(value, expected, nullable: bool) -> bool:
    """Whether a config.json value has its field's type (a float field takes an int; JSON has no int/float)."""
    if nullable and value is None:
        return True
    if isinstance(expected, float):
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    return type(value) is type(expected) or (nullable and isinstance(value, str))


def _check_shapes(model: nn.Module, path: Path) -> None:
    """Compare the tensor shapes model.safetensors' header lists with ``model``'s (which may live on the meta
    device: nothing is allocated); CheckpointError, saying which tensors differ, if they do not fit."""
    from safetensors import SafetensorError, safe_open

    if not path.is_file():
        raise CheckpointError(f"no weights at {path}; the checkpoint is incomplete")
    try:
        with safe_open(str(path), framework="pt") as f:
            state = {k: tuple(f.get_slice(k).get_shape()) for k in f.keys()}
    except (SafetensorError, OSError, ValueError) as e:
        raise CheckpointError(f"{path} cannot be read ({e}); the file is truncated or damaged. "
                              "Re-save or re-train the checkpoint.") from e
    own = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    wrong = sorted(k for k in set(own) & set(state) if own[k] != state[k])
    if missing or unexpected or wrong:
        detail = "; ".join(
            f"{label}: {names[:4]}{' ...' if len(names) > 4 else ''}"
            for label, names in (("missing", missing), ("unexpected", unexpected), ("shape differs", wrong))
            if names
        )
        raise CheckpointError(
            f"{path} was saved from a different model configuration ({detail}). "
            "Load it with GatoPolicy.from_pretrained(dir), which uses the saved config.json."
        )


class FullContext:
    """The uncached reference path, in place of a :class:`KVCache`: :meth:`GatoPolicy.extend` keeps
    every chunk fed and re-runs the last ``context_len`` tokens of them at each call (how NEKO acts
    and decodes; kept to measure the cache against). Same tokens as the cache, up to float round-off."""

    def __init__(self):
        self.chunks: list[dict] = []

    def keep_rows(self, rows: torch.Tensor) -> None:
        """Keep only the batch rows ``rows`` (indices, in the order given) of every chunk fed."""
        self.chunks = [keep_stream_rows(c, rows) for c in self.chunks]


def keep_stream_rows(stream: dict, rows: torch.Tensor) -> dict:
    """The rows ``rows`` of a stream chunk; its patches, ordered row-major over (B, T), regrouped by row first."""
    B = stream["tokens"].shape[0]
    rows = rows.to(stream["tokens"].device)
    out = {}
    for k, v in stream.items():
        if k not in ("patches", "patch_rowcol"):
            out[k] = v.index_select(0, rows)
        elif v.shape[0]:
            out[k] = v.reshape((B, -1) + v.shape[1:]).index_select(0, rows).reshape((-1,) + v.shape[1:])
        else:
            out[k] = v
    return out


def concat_streams(chunks: list[dict], context_len: int) -> dict:
    """One stream of the last ``context_len`` tokens of ``chunks``. Every row has the same
    layout, so each row holds the same number of patches."""
    B = chunks[0]["tokens"].shape[0]
    stream = {k: torch.cat([c[k] for c in chunks], dim=1) for k in ("tokens", "in_step_pos", "patch_mask")}
    cut = max(0, stream["tokens"].shape[1] - context_len)
    dropped = int(stream["patch_mask"][0, :cut].sum())
    stream = {k: v[:, cut:] for k, v in stream.items()}
    with_patches = [c for c in chunks if c["patches"].shape[0]]
    if not with_patches:  # a stream without images
        stream["patches"], stream["patch_rowcol"] = chunks[0]["patches"], chunks[0]["patch_rowcol"]
        return stream
    # Patches are ordered row-major over (B, T): regroup them by row before joining chunks.
    patches = torch.cat([c["patches"].reshape((B, -1) + c["patches"].shape[1:]) for c in with_patches], dim=1)
    rowcol = torch.cat([c["patch_rowcol"].reshape(B, -1, 2) for c in with_patches], dim=1)
    stream["patches"] = patches[:, dropped:].reshape((-1,) + patches.shape[2:])
    stream["patch_rowcol"] = rowcol[:, dropped:].reshape(-1, 2)
    return stream


def single_token_stream(tok: torch.Tensor, pos: int, device) -> dict:
    """A one-token stream (B, 1) of ids at in-timestep position ``pos``."""
    B = tok.shape[0]
    return {
        "tokens": tok.view(B, 1).to(device),
        "in_step_pos": torch.full((B, 1), pos, dtype=torch.long, device=device),
        "patch_mask": torch.zeros(B, 1, dtype=torch.bool, device=device),
        "patches": torch.zeros(0, 1, 1, 1, device=device),
        "patch_rowcol": torch.zeros(0, 2, dtype=torch.long, device=device),
    }


def _with_gpt2(config: PolicyConfig, path) -> PolicyConfig:
    """``config`` with the fields a local GPT-2 directory sets (see gato.policy.pretrained.gpt2_fields)."""
    from gato.policy.pretrained import PretrainedLMError, gpt2_fields, read_gpt2_config

    lm = gpt2_fields(path, read_gpt2_config(path))
    if config.tokenizer_model_name not in (None, "", lm["tokenizer_model_name"]):
        raise PretrainedLMError(f"pretrained_lm {path} brings its own tokenizer; drop tokenizer_model_name "
                                f"{config.tokenizer_model_name!r}")
    if config.context_len > lm["max_positions"]:
        raise PretrainedLMError(f"context_len {config.context_len} exceeds pretrained_lm {path}'s "
                                f"{lm['max_positions']} positions (n_positions): pass context_len <= "
                                f"{lm['max_positions']}")
    return replace(config, **lm)


def _policy_vocab(config: PolicyConfig, tokenizer_dir=None) -> tuple[Vocab, str | None]:
    """The policy's Vocab, and its tokenizer.json text when the tokenizer is a Hugging Face one (kept to be
    saved into checkpoints). ``tokenizer_dir``: read the tokenizer there instead of config.tokenizer_model_name
    (a checkpoint's copy), the Vocab keeping the config's name (tasks encoded for it still match)."""
    from gato.text_tokenizer import WordByteTokenizer, load_tokenizer

    name = config.tokenizer_model_name
    source = Path(tokenizer_dir) if tokenizer_dir is not None and name else Path(name) if name else None
    tokenizer = load_tokenizer(name if source is None else str(source))
    vocab = Vocab(name, config.discrete_tokens, config.continuous_tokens, config.mu, config.M,
                  task_tokens=config.task_tokens, tokenizer=tokenizer)
    if isinstance(tokenizer, WordByteTokenizer):
        return vocab, None
    return vocab, (source / TOKENIZER_FILE).read_text(encoding="utf-8")

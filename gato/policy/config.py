"""PolicyConfig: the one home of every model setting and its default (saved as a checkpoint's config.json),
but for the vocabulary's, which are :class:`gato.vocab.Vocab`'s.

``gato train``'s model flags take their defaults and help from here (see ``TrainingArgs.policy_config``), and
``GatoPolicy(**keywords)`` fills what is not given from here: no default is written twice.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from gato.vocab import Vocab  # the vocabulary's sizes and mu-law constants are Vocab's defaults, read here


def _field(default, help: str):
    """A config field and its one-line doc (``help``: the ``gato train`` flag shows it too)."""
    return field(default=default, metadata={"help": help})


@dataclass
class PolicyConfig:
    """Everything needed to rebuild a GatoPolicy; ``dataclasses.asdict`` of it is config.json."""

    embed_dim: int = _field(128, "transformer width (token embedding size)")
    layers: int = _field(4, "transformer blocks")
    heads: int = _field(4, "attention heads (must divide embed_dim)")
    dropout: float = _field(0.0, "dropout on embeddings and residual branches; 0, as every `gato train` run and "
                                 "measured result used (it learnt fastest on 5k BabyAI episodes); NEKO's is 0.1")
    mu: float = _field(Vocab.mu, "mu-law mu for continuous values")
    M: float = _field(Vocab.M, "mu-law M for continuous values")
    patch_size: int = _field(4, "side of the square image patches, in pixels")
    resid_mid_channels: int = _field(32, "channels inside the per-patch ResNet block")
    continuous_tokens: int = _field(Vocab.continuous_tokens, "number of bins for continuous values")
    discrete_tokens: int = _field(Vocab.discrete_tokens, "size of the discrete-value token range")
    task_tokens: int = _field(Vocab.task_tokens, "task-id tokens reserved in the vocabulary (one per control task of "
                                                 "a multi-task run; `gato train` raises it to the run's number of "
                                                 "datasets). Checkpoints written before the field existed have 64")
    context_len: int = _field(256, "context length in tokens (also the rows of the in-timestep position table); "
                                   "256, as every `gato train` run used")
    use_patch_pos_encoding: bool = _field(True, "add learned patch row/column position encodings")
    use_pos_encoding: bool = _field(True, "add learned in-timestep position encodings")
    activation_fn: str = _field("gelu", "feed-forward activation: gelu or geglu")
    flash: bool = _field(True, "let SDPA use its fused (flash / memory-efficient) kernels; False forces the plain "
                               "math kernel")
    value_embedding: bool = _field(True, "add a smooth function of each continuous bin's value to its embedding "
                                         "(see ValueEmbedding)")
    tokenizer_model_name: str | None = _field(None, "local tokenizer directory (tokenizer.json); None: the built-in "
                                                    "tokenizer")
    pad_seq: bool = _field(False, "pad every batch to the full context instead of trimming trailing padding")
    image_channels: int = _field(32, "most image channels the patch encoder takes (fewer are padded; one-hot grids "
                                     "need values x channels)")
    image_channel_pad: float = _field(-1.0, "value of the channels an image lacks (fewer than image_channels). -1 "
                                            "(the control runs) adds a constant to every patch that drowns a "
                                            "picture's 3 channels; 0 adds nothing: with 0, captions and VQA read "
                                            "colour and shape (docs/EXPERIMENTS.md, run E)")
    image_summary: bool = _field(False, "add a CNN summary of each whole image to its patch tokens (for small "
                                        "objects far apart, e.g. Breakout; see ImageSummary)")
    image_summary_pooled: bool = _field(False, "with image_summary, also read the CNN (with group norms) max-pooled "
                                               "over the whole image: what is there, wherever it is (see ImageSummary)")
    text_film: bool = _field(True, "condition each image's patch encoder on its timestep's text (FiLM, as BabyAI's "
                                   "baselines read the grid given the mission)")
    film_carry: bool = _field(True, "with text_film, a timestep whose observation holds no text (a later timestep "
                                    "of a window that reads its mission once) takes the latest text of its window")
    positions: str = _field("rope", "order across the context: rope (rotary, relative; slides with the KV cache "
                                    "for free) or learned (absolute table added at the input, as GPT-2's; set by "
                                    "pretrained_lm)")
    max_positions: int = _field(0, "rows of the learned position table (positions=learned; 0: context_len); "
                                   "GPT-2's n_positions with pretrained_lm, and context_len may not exceed it")
    layer_norm_eps: float = _field(1e-5, "epsilon of the transformer's layer norms (GPT-2's layer_norm_epsilon with "
                                         "pretrained_lm)")
    lora_r: int = _field(0, "LoRA rank on the transformer's attention and MLP linear layers (peft); 0: off. With "
                            "LoRA only the adapters and the non-text embeddings train (NEKO: 8)")
    lora_alpha: float = _field(32.0, "LoRA alpha (the adapters' scale is alpha / r; NEKO: 32)")
    lora_dropout: float = _field(0.1, "dropout on the LoRA adapters' inputs (NEKO: 0.1)")

    def __post_init__(self):
        # NEKO passes mu=100, M=256: stored as floats so config.json reads back equal.
        self.mu, self.M = float(self.mu), float(self.M)
        self.layer_norm_eps, self.lora_alpha = float(self.layer_norm_eps), float(self.lora_alpha)
        self.image_channel_pad = float(self.image_channel_pad)
        if self.positions not in ("rope", "learned"):
            raise ValueError(f"positions must be 'rope' or 'learned', got {self.positions!r}")
        if self.positions == "learned" and self.context_len > self.position_rows:
            raise ValueError(f"context_len {self.context_len} exceeds the {self.position_rows} learned positions "
                             f"(max_positions, GPT-2's n_positions): pass context_len <= {self.position_rows}")
        if self.lora_r < 0:
            raise ValueError(f"lora_r must be >= 0 (0: no LoRA), got {self.lora_r}")

    @property
    def position_rows(self) -> int:
        """Rows of the learned position table (positions='learned'): max_positions, or context_len if 0."""
        return self.max_positions or self.context_len

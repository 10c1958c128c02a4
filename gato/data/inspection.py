"""What a dataset's timesteps look like when they reach the model (``gato inspect DATASET --steps N``).

``describe_steps`` encodes an episode's first timesteps field by field and says what every token id
means: a discrete value, a continuous bin and the value at its centre, a text token's string, an image
patch's place in its grid, the separator, the action tokens and the action they decode to.
``patch_picture`` draws an observation's image patches as the model receives them: scaled to [-1, 1],
cut into the patch grid (thin gaps between patches), one panel per channel unless the image is RGB.
"""

from __future__ import annotations

import numpy as np

from gato.codec import ContinuousField, DiscreteField, ImageField, PatchField, SpaceCodec, TextField, _get, as_str


def _at(obs, t: int):
    """Timestep ``t`` of a (possibly nested) batch of observations or actions, as a batch of one."""
    if isinstance(obs, dict):
        return {k: _at(v, t) for k, v in obs.items()}
    if isinstance(obs, tuple):
        return tuple(_at(v, t) for v in obs)
    return obs[t : t + 1]


def abbreviate(value, limit: int = 60) -> str:
    """A short text for a raw value: small arrays in full, big ones by shape, dtype and range."""
    is_string = isinstance(value, np.ndarray) and value.dtype.kind in "SUO" and value.size == 1
    if isinstance(value, (str, bytes)) or is_string:
        text = repr(as_str(value))
        return text if len(text) <= limit else text[: limit - 4] + "...'"
    arr = np.asarray(value)
    if arr.size <= 8:
        return str(arr.tolist())
    return f"array{tuple(arr.shape)} {arr.dtype}, {arr.min():g}..{arr.max():g}"


def token_meanings(field, ids: np.ndarray, codec: SpaceCodec) -> list[str]:
    """What each of one field's token ids means (``ids``: its tokens for one timestep)."""
    vocab = codec.vocab
    if isinstance(field, DiscreteField):
        return [f"value {int(i) - vocab.discrete_offset + int(s)}" for i, s in zip(ids, field.start)]
    if isinstance(field, ContinuousField):
        bins = np.clip(ids - vocab.continuous_offset, 0, vocab.continuous_tokens - 1)
        centre = (bins + 0.5) / vocab.continuous_tokens * 2.0 - 1.0
        values = field._from_unit(centre.astype(np.float64), vocab)
        if field.is_action:
            values = np.clip(values, field.low, field.high)
        return [f"bin {int(b)} -> {v:.4g}" for b, v in zip(bins, values)]
    if isinstance(field, PatchField):
        return [f"patch {r},{c}" for r, c in np.stack(np.divmod(np.arange(field.n_patches), field.cols), -1)]
    if isinstance(field, TextField):
        tok = vocab.tokenizer
        return ["<pad>" if int(i) == tok.pad_id else repr(tok.decode([int(i)])) for i in ids]
    return ["?"] * len(ids)


def describe_steps(codec: SpaceCodec, observations, actions, rewards=None, n_steps: int = 3) -> list[dict]:
    """The first ``n_steps`` timesteps of one episode (its observations, actions and rewards as Minari
    stores them) as they reach the model. One dict per timestep: ``step``, ``reward``, ``tokens`` (the
    timestep's whole row of ids: what ``EncodedEpisodes.encode`` writes), ``fed`` (the ids the model reads of
    it in a window that starts at timestep 0: a later timestep leaves out the fields read once per window),
    ``fields`` (one dict per token group: field, value, ids, meanings, once; the task token, the separator and
    each action field included) and ``action`` (what the action tokens decode to, as the env would be given it)."""
    vocab = codec.vocab
    n_steps = min(n_steps, len(actions))
    out = []
    for t in range(n_steps):
        obs, act = _at(observations, t), _at(actions, t)
        groups = []
        if codec.task_id is not None:
            token = vocab.task(codec.task_id)
            groups.append({"field": "task", "value": "", "ids": [token], "meanings": [f"task {codec.task_id}"]})
        for f in codec.obs_fields:
            values = _get(obs, f.path)
            ids = f.encode(values, vocab)[0]
            groups.append({"field": f.name, "value": abbreviate(values[0]), "ids": ids.tolist(),
                           "meanings": token_meanings(f, ids, codec), "once": f.once})
        groups.append({"field": "separator", "value": "", "ids": [vocab.separator], "meanings": ["separator"]})
        action_ids = []
        for f in codec.action_fields:
            values = _get(act, f.path)
            ids = f.encode(values, vocab)[0]
            action_ids += ids.tolist()
            groups.append({"field": f.name, "value": abbreviate(np.asarray(values)[0]), "ids": ids.tolist(),
                           "meanings": token_meanings(f, ids, codec)})
        decoded = codec.decode_actions(np.asarray([action_ids]))
        out.append({"step": t, "reward": None if rewards is None else float(rewards[t]),
                    "tokens": [i for g in groups for i in g["ids"]],
                    "fed": [i for g in groups if not (t and g.get("once")) for i in g["ids"]], "fields": groups,
                    "action": _first_of(decoded)})
    return out


def _first_of(batch):
    """The first item of a batch of actions (dicts and tuples walked), as plain Python values."""
    if isinstance(batch, dict):
        return {k: _first_of(v) for k, v in batch.items()}
    if isinstance(batch, tuple):
        return tuple(_first_of(v) for v in batch)
    return np.asarray(batch)[0].tolist()


PICTURE_SCALE = 8
"""Screen pixels per model pixel in a patch picture."""
PATCH_GAP = 1
"""Model pixels of gap between two patches."""
PANEL_GAP = 3
"""Model pixels of gap between two channel panels (and between two image fields)."""


def _mosaic(patches: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """(n_patches, P, P[, 3]) values in [0, 1] -> one picture of the grid with PATCH_GAP gaps (NaN)."""
    P = patches.shape[1]
    extra = patches.shape[3:]
    out = np.full((rows * P + (rows - 1) * PATCH_GAP, cols * P + (cols - 1) * PATCH_GAP) + extra, np.nan)
    for k, patch in enumerate(patches):
        r, c = divmod(k, cols)
        top, left = r * (P + PATCH_GAP), c * (P + PATCH_GAP)
        out[top : top + P, left : left + P] = patch
    return out


def _grid(panels: list[np.ndarray], ncols: int) -> np.ndarray:
    """Panels of one size laid out ``ncols`` to a row with PANEL_GAP gaps (-inf: drawn apart from patch gaps)."""
    h, w = panels[0].shape[:2]
    nrows = -(-len(panels) // ncols)
    ncols = min(ncols, len(panels))
    out = np.full((nrows * h + (nrows - 1) * PANEL_GAP, ncols * w + (ncols - 1) * PANEL_GAP) + panels[0].shape[2:],
                  -np.inf)
    for k, panel in enumerate(panels):
        r, c = divmod(k, ncols)
        out[r * (h + PANEL_GAP) : r * (h + PANEL_GAP) + h, c * (w + PANEL_GAP) : c * (w + PANEL_GAP) + w] = panel
    return out


def field_picture(field: ImageField, values) -> np.ndarray:
    """(H, W, 3) RGB in [0, 1] of one observation's patches of ``field`` (``values``: a batch of one), from
    the model's [-1, 1] input: RGB when the image has 3 channels, else one grey panel per channel (a one-hot
    image: a row per source channel, a column per value); gaps between patches are blue, between panels white."""
    patches = field.patches(values)[0].astype(np.float64)  # (n_patches, C, P, P) raw
    unit = (patches - field.low) / (field.high - field.low)  # the model's [-1, 1] input, shown as [0, 1]
    if field.channels == 3 and not field.levels:
        picture = _mosaic(np.moveaxis(unit, 1, -1), field.rows, field.cols)
    else:
        panels = [_mosaic(unit[:, c], field.rows, field.cols) for c in range(field.channels)]
        picture = _grid(panels, field.levels or min(field.channels, 8))
        picture = np.repeat(picture[..., None], 3, axis=-1)
    gap, panel_gap = np.isnan(picture).any(axis=-1), np.isneginf(picture).any(axis=-1)
    picture = np.clip(np.nan_to_num(picture, neginf=1.0), 0.0, 1.0)
    picture[gap] = (0.35, 0.45, 0.7)
    picture[panel_gap] = 1.0
    return picture


def picture_size(field: ImageField) -> tuple[int, int]:
    """(height, width) in screen pixels of :func:`field_picture`'s picture of ``field``, scaled."""
    P = field.patch_size
    h = field.rows * P + (field.rows - 1) * PATCH_GAP
    w = field.cols * P + (field.cols - 1) * PATCH_GAP
    if not (field.channels == 3 and not field.levels):
        ncols = min(field.levels or min(field.channels, 8), field.channels)
        nrows = -(-field.channels // ncols)
        h, w = nrows * h + (nrows - 1) * PANEL_GAP, ncols * w + (ncols - 1) * PANEL_GAP
    return h * PICTURE_SCALE, w * PICTURE_SCALE


def patch_picture(codec: SpaceCodec, observation, path) -> tuple[int, int]:
    """Write a PNG at ``path`` of the image patches of ``observation`` (a batch of one, as :func:`_at` gives)
    as the model receives them (image fields one under another); returns its (height, width) in pixels."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from gato import atomic

    images = [f for f in codec.obs_fields if isinstance(f, ImageField)]
    if not images:
        raise ValueError("this dataset's observations hold no image, so there are no patches to draw; "
                         "drop --picture")
    pictures = [field_picture(f, _get(observation, f.path)) for f in images]
    width = max(p.shape[1] for p in pictures)
    rows = []
    for k, p in enumerate(pictures):
        if k:
            rows.append(np.ones((PANEL_GAP, width, 3)))
        rows.append(np.pad(p, ((0, 0), (0, width - p.shape[1]), (0, 0)), constant_values=1.0))
    picture = np.concatenate(rows).repeat(PICTURE_SCALE, axis=0).repeat(PICTURE_SCALE, axis=1)
    with atomic.replacing(path) as tmp:
        plt.imsave(tmp, picture, format="png")
    return picture.shape[0], picture.shape[1]

"""RawEpisodes in one safetensors file, readable without unpickling anything.

A training state must hold the episodes DAgger added (``ControlTask.added_episodes``), whose observations are
any nesting of Dict and Tuple values over arrays and strings (a BabyAI mission). Numeric arrays go in as tensors;
the nesting, the strings and the episode ids go in the file's JSON metadata, where each array is named by its key.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from safetensors.numpy import load_file, save_file

from gato.data.episodes import RawEpisodes

_META = "gato_episodes"


def save_episodes(raw: RawEpisodes, path: str | Path) -> None:
    """Write ``raw`` to ``path`` (read back by :func:`load_episodes`)."""
    arrays: dict[str, np.ndarray] = {}
    taken = raw.taken or [None] * len(raw)
    episodes = [{"id": str(ep_id),
                 "observations": _pack(obs, f"{i}.o", arrays), "actions": _pack(act, f"{i}.a", arrays),
                 "rewards": _pack(np.asarray(rew), f"{i}.r", arrays),
                 "taken": None if took is None else _pack(took, f"{i}.t", arrays)}
                for i, (ep_id, obs, act, rew, took) in enumerate(zip(raw.ids, raw.observations, raw.actions,
                                                                    raw.rewards, taken))]
    save_file(arrays, str(path), metadata={_META: json.dumps(episodes)})


def load_episodes(path: str | Path) -> RawEpisodes:
    """The episodes :func:`save_episodes` wrote."""
    from safetensors import safe_open

    with safe_open(str(path), framework="numpy") as f:
        episodes = json.loads(f.metadata()[_META])
    arrays = load_file(str(path))
    taken = [None if ep["taken"] is None else _unpack(ep["taken"], arrays) for ep in episodes]
    return RawEpisodes(observations=[_unpack(ep["observations"], arrays) for ep in episodes],
                       actions=[_unpack(ep["actions"], arrays) for ep in episodes],
                       rewards=[_unpack(ep["rewards"], arrays) for ep in episodes],
                       ids=[ep["id"] for ep in episodes],
                       taken=None if all(t is None for t in taken) else taken)


def _pack(value, key: str, arrays: dict) -> dict:
    """A JSON description of ``value``; its numeric arrays are added to ``arrays`` under keys from ``key``."""
    if isinstance(value, dict):
        return {"dict": {k: _pack(v, f"{key}.{k}", arrays) for k, v in value.items()}}
    if isinstance(value, tuple):
        return {"tuple": [_pack(v, f"{key}.{i}", arrays) for i, v in enumerate(value)]}
    array = np.asarray(value)
    if array.dtype.kind in "USO":  # strings (a Text space's values)
        return {"strings": [str(v) for v in array.reshape(-1)], "shape": list(array.shape)}
    arrays[key] = np.ascontiguousarray(array)
    return {"array": key}


def _unpack(description: dict, arrays: dict):
    if "dict" in description:
        return {k: _unpack(v, arrays) for k, v in description["dict"].items()}
    if "tuple" in description:
        return tuple(_unpack(v, arrays) for v in description["tuple"])
    if "strings" in description:
        strings = description["strings"]
        return strings if len(description["shape"]) == 1 else np.array(strings).reshape(description["shape"])
    return arrays[description["array"]]

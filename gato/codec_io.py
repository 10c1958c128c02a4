"""A SpaceCodec as JSON: what a checkpoint saves so that it can act without the data it was fitted to.

``codec_to_dict`` records everything :class:`gato.codec.SpaceCodec` is built from -- the two spaces
(leaves written by Minari's ``serialize_space``), the patch size, the task id, the field overrides
(fitted value ranges and one-hot reads included, every ``FieldSpec`` field carried by name) and the
text budgets -- plus the vocabulary it is encoded for and the tokens a timestep takes, which
``codec_from_dict`` checks after rebuilding. Dict keys keep their saved order: a codec's token order
follows the space's key order.
"""

from __future__ import annotations

import dataclasses
import string

import numpy as np
from gymnasium import spaces

from gato import codec as _codec
from gato.codec import FieldSpec, SpaceCodec, VocabMismatchError, dotted, is_string_space
from gato.vocab import Vocab

_ACTION_TEXT = getattr(_codec, "ACTION_TEXT", "action:")
"""The key prefix of an action field's text budget (where the codec has text actions: SpaceCodec's text_budget)."""

FORMAT = 1
"""Version of the dict ``codec_to_dict`` writes; ``codec_from_dict`` refuses others."""

_VOCAB_FIELDS = ("tokenizer_name", "discrete_tokens", "continuous_tokens", "mu", "M", "task_tokens")


class CodecFormatError(ValueError):
    """A saved codec that cannot be rebuilt (damaged, from a newer neko-gato, or no longer the same layout)."""


def space_to_dict(space: spaces.Space) -> dict:
    """JSON-able form of ``space``. Dict and Tuple are walked here (so a Dict keeps its key order);
    leaves go through ``minari.serialization.serialize_space``. A string space that is not a Text
    (minigrid's MissionSpace) is written as a Text: the codec reads any string space alike."""
    from minari.serialization import serialize_space

    if isinstance(space, spaces.Dict):
        return {"type": "Dict", "keys": list(space.spaces),
                "subspaces": [space_to_dict(s) for s in space.spaces.values()]}
    if isinstance(space, spaces.Tuple):
        return {"type": "Tuple", "subspaces": [space_to_dict(s) for s in space.spaces]}
    if is_string_space(space) and not isinstance(space, spaces.Text):
        space = spaces.Text(max_length=4096, charset=string.printable)
    try:
        return serialize_space(space, to_string=False)
    except NotImplementedError:
        raise CodecFormatError(f"{space} cannot be saved: Minari serialises Box, Discrete, MultiDiscrete, "
                               "MultiBinary, Text, Dict and Tuple spaces") from None


def space_from_dict(data: dict) -> spaces.Space:
    """The space :func:`space_to_dict` wrote."""
    from minari.serialization import deserialize_space

    if data.get("type") == "Dict":
        return spaces.Dict([(k, space_from_dict(s)) for k, s in zip(data["keys"], data["subspaces"])])
    if data.get("type") == "Tuple":
        return spaces.Tuple([space_from_dict(s) for s in data["subspaces"]])
    return deserialize_space(data)


def field_spec_to_dict(spec: FieldSpec) -> dict:
    """Every set field of ``spec`` by name (numpy scalars as Python numbers)."""
    out = {}
    for f in dataclasses.fields(spec):
        value = getattr(spec, f.name)
        if value is not None:
            out[f.name] = value.item() if isinstance(value, np.generic) else value
    return out


def field_spec_from_dict(data: dict) -> FieldSpec:
    """The FieldSpec :func:`field_spec_to_dict` wrote; a field this version lacks is an error."""
    known = {f.name for f in dataclasses.fields(FieldSpec)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise CodecFormatError(f"a saved field override has fields {unknown} that this neko-gato does not know; "
                               "it was saved by a newer version: upgrade neko-gato")
    return FieldSpec.parse(dict(data))


def vocab_to_dict(vocab: Vocab) -> dict:
    """The fields that say which vocabulary a codec's tokens belong to."""
    return {name: getattr(vocab, name) for name in _VOCAB_FIELDS}


def codec_to_dict(codec: SpaceCodec) -> dict:
    """JSON-able description from which :func:`codec_from_dict` rebuilds ``codec`` exactly."""
    return {
        "format": FORMAT,
        "observation_space": space_to_dict(codec.observation_space),
        "action_space": space_to_dict(codec.action_space),
        "patch_size": int(codec.patch_size),
        "task_id": codec.task_id,
        "overrides": {path: field_spec_to_dict(FieldSpec.parse(v)) for path, v in codec.overrides.items()},
        "text_budget": {**{dotted(f.path): int(f.n_tokens) for f in codec.obs_fields if f.kind == "text"},
                        **{_ACTION_TEXT + dotted(f.path): int(f.n_tokens) for f in codec.action_fields
                           if f.kind == "text"}},
        "vocab": vocab_to_dict(codec.vocab),
        "tokens_per_step": int(codec.tokens_per_step),
    }


def codec_from_dict(data: dict, vocab: Vocab | None = None, observation_space=None, action_space=None) -> SpaceCodec:
    """The codec :func:`codec_to_dict` described, for ``vocab`` (a policy's; None: one built from the saved
    fields). ``observation_space``/``action_space`` (an env's) replace the saved ones when given; they must
    match them (a MissionSpace matches its saved Text). A vocabulary other than the saved one, or a layout
    that no longer takes the saved number of tokens, is an error."""
    from gato.codec import space_mismatch

    if data.get("format") != FORMAT:
        raise CodecFormatError(f"saved codec format {data.get('format')!r} is not {FORMAT}; it was saved by "
                               "another version of neko-gato")
    saved_vocab = data["vocab"]
    if vocab is None:
        vocab = Vocab(**saved_vocab)
    elif vocab_to_dict(vocab) != saved_vocab:
        raise VocabMismatchError(f"the saved codec is for vocabulary {saved_vocab}, not the policy's "
                                 f"{vocab_to_dict(vocab)}: its tokens would mean other things to the policy")
    saved = {"observation": space_from_dict(data["observation_space"]), "action": space_from_dict(data["action_space"])}
    given = {"observation": observation_space, "action": action_space}
    for kind, space in given.items():
        if space is not None:
            problem = space_mismatch(saved[kind], space, "obs" if kind == "observation" else "action")
            if problem:
                raise CodecFormatError(f"the env's {kind} space is not the one the codec was saved for "
                                       f"({problem}); make the env the checkpoint names")
    overrides = {path: field_spec_from_dict(spec) for path, spec in data["overrides"].items()}
    codec = SpaceCodec(given["observation"] or saved["observation"], given["action"] or saved["action"], vocab,
                       data["patch_size"], overrides, dict(data["text_budget"]), data["task_id"])
    if codec.tokens_per_step != data["tokens_per_step"]:
        raise CodecFormatError(f"the rebuilt codec takes {codec.tokens_per_step} tokens a timestep, the saved one "
                               f"took {data['tokens_per_step']}: this neko-gato reads the spaces differently "
                               "from the one that trained the checkpoint")
    return codec

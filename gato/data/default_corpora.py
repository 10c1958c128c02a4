"""The offline defaults of the text, caption and VQA tasks, written by ``gato data text|captions|vqa``.

Each is a local ``datasets.DatasetDict`` (splits ``train``, ``test``) saved under ``data_root()/NAME`` with
``save_to_disk``, written whole into a temporary directory and swapped in (``gato.atomic.replacing_dir``), with
a ``baselines.json`` beside it (figures a trained model should beat, read by
:func:`gato.data.corpora.recorded_baselines`). Nothing is downloaded: the sources are installed packages.

- ``text/pydoc``: the Python standard library's reference documentation (``pydoc_data.topics``, shipped with
  every Python), one document per topic; every 10th topic in sorted order is held out.
- ``vqa/easy-vqa``: the ``easy_vqa`` package (MIT): 64x64 images of one coloured shape and questions about it.
  ``kind`` is the question's kind: "yes/no", "colour" (the answer is a colour) or "shape".
- ``captions/shapes``: the same images, each captioned "a <colour> <shape>" as its VQA questions state them;
  where they state only one of the two (about 12% of images), the other is read from the pixels, a rule that
  agrees with the questions on every image where both are stated (checked each time it is written).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from pathlib import Path

from gato.data.corpora import BASELINES_FILE, DEFAULT_BY_KIND, DEFAULTS, CorpusError, DataFormatError, data_root

__all__ = ["COLOURS", "DEFAULTS", "DEFAULT_BY_KIND", "SHAPES", "DefaultExistsError", "list_defaults",
           "make_default", "pixel_shape_and_colour", "question_kind", "shape_and_colour", "vqa_baselines"]

COLOURS = ("black", "blue", "brown", "gray", "green", "red", "teal", "yellow")
SHAPES = ("circle", "rectangle", "triangle")
_PYDOC_HOLDOUT_EVERY = 10


class DefaultExistsError(CorpusError):
    """A default that is already made, asked for again without ``overwrite``."""


def list_defaults() -> list[dict]:
    """One row per default, for ``gato data list``: name, what (one line), made (bool), path."""
    return [{"name": name, "what": what, "made": (data_root() / name).is_dir(), "path": str(data_root() / name)}
            for name, what in DEFAULTS.items()]


def make_default(name: str, overwrite: bool = False, limit: int | None = None, progress: bool = True) -> dict:
    """Write the default ``name`` (a key of :data:`DEFAULTS`) under ``data_root()/name``, atomically.

    ``limit``: at most this many images per split (easy-VQA defaults; for quick tests; the default made by
    ``gato data`` uses all). ``progress``: a tqdm bar on stderr. Raises :class:`DefaultExistsError` when it is
    already made and ``overwrite`` is false. Returns {"name", "path", "rows": {split: n}, "seconds",
    "baselines"}.
    """
    import datasets

    from gato.atomic import replacing_dir, write_json

    if name not in DEFAULTS:
        raise CorpusError(f"unknown default {name!r}: one of {', '.join(DEFAULTS)}")
    target = data_root() / name
    if target.exists() and not overwrite:
        raise DefaultExistsError(f"{target} exists: pass overwrite (gato data ... --overwrite) to write it again")
    start = time.perf_counter()
    dataset, baselines = _BUILDERS[name](limit=limit, progress=progress)
    datasets.disable_progress_bars()
    with replacing_dir(target) as tmp:
        dataset.save_to_disk(str(tmp))
        write_json(tmp / BASELINES_FILE, baselines)
    return {"name": name, "path": str(target), "rows": {k: len(v) for k, v in dataset.items()},
            "seconds": round(time.perf_counter() - start, 2), "baselines": baselines}


# ---------------------------------------------------------------------------------------------------------------
# text/pydoc


def _pydoc(limit: int | None = None, progress: bool = True):
    """(DatasetDict of topic, text; baselines: documents and characters per split)."""
    from pydoc_data.topics import topics

    import datasets

    names = sorted(topics)[:limit]
    held = {name for i, name in enumerate(names) if i % _PYDOC_HOLDOUT_EVERY == _PYDOC_HOLDOUT_EVERY - 1}
    splits = {"train": [n for n in names if n not in held], "test": [n for n in names if n in held]}
    dataset = datasets.DatasetDict({
        split: datasets.Dataset.from_dict({"topic": chosen, "text": [topics[n] for n in chosen]})
        for split, chosen in splits.items()})
    baselines = {"source": "pydoc_data.topics", "held_out": f"every {_PYDOC_HOLDOUT_EVERY}th topic in sorted order",
                 "documents": {s: len(c) for s, c in splits.items()},
                 "characters": {s: sum(len(topics[n]) for n in c) for s, c in splits.items()}}
    return dataset, baselines


# ---------------------------------------------------------------------------------------------------------------
# vqa/easy-vqa


def question_kind(answer: str) -> str:
    """The kind of an easy-VQA question, from the answer it takes: "yes/no", "colour" or "shape"."""
    if answer in ("yes", "no"):
        return "yes/no"
    if answer in COLOURS:
        return "colour"
    if answer in SHAPES:
        return "shape"
    raise DataFormatError(f"easy-VQA answer {answer!r} is none of yes/no, {COLOURS}, {SHAPES}")


def _easy_vqa_questions(split: str, limit: int | None) -> tuple[list[tuple[str, str, int]], dict[int, str]]:
    """([(question, answer, image_id)], {image_id: png path}) of a split, limited to its first ``limit`` images."""
    import easy_vqa

    questions, answers, ids = easy_vqa.get_train_questions() if split == "train" else easy_vqa.get_test_questions()
    paths = easy_vqa.get_train_image_paths() if split == "train" else easy_vqa.get_test_image_paths()
    kept = sorted(paths)[:limit]
    paths = {i: paths[i] for i in kept}
    return [(q, a, i) for q, a, i in zip(questions, answers, ids) if i in paths], paths


def _read_images(paths: dict[int, str], label: str, progress: bool) -> dict[int, dict]:
    """{image_id: {"bytes": png, "path": None}}: the files' bytes, stored as they are."""
    from tqdm.auto import tqdm

    return {i: {"bytes": Path(p).read_bytes(), "path": None}
            for i, p in tqdm(sorted(paths.items()), desc=f"reading {label} images", unit="img", disable=not progress)}


def _easy_vqa(limit: int | None = None, progress: bool = True):
    """(DatasetDict of image, question, answer, kind, image_id; majority and question-only baselines)."""
    import datasets

    features = datasets.Features(image=datasets.Image(), question=datasets.Value("string"),
                                 answer=datasets.Value("string"), kind=datasets.Value("string"),
                                 image_id=datasets.Value("int32"))
    splits, rows = {}, {}
    for split in ("train", "test"):
        rows[split], paths = _easy_vqa_questions(split, limit)
        images = _read_images(paths, f"easy-VQA {split}", progress)
        splits[split] = datasets.Dataset.from_dict(
            {"image": [images[i] for _, _, i in rows[split]], "question": [q for q, _, _ in rows[split]],
             "answer": [a for _, a, _ in rows[split]], "kind": [question_kind(a) for _, a, _ in rows[split]],
             "image_id": [i for _, _, i in rows[split]]}, features=features)
    return datasets.DatasetDict(splits), vqa_baselines(rows["train"], rows["test"])


def vqa_baselines(train: list[tuple[str, str, object]], test: list[tuple[str, str, object]]) -> dict:
    """Answer accuracy on ``test`` of two blind guessers fitted on ``train`` ((question, answer, _) rows):
    the majority answer, and the question-only answer (each question string's most frequent train answer,
    else the majority); each overall, on colour+shape questions and per kind."""
    majority = Counter(a for _, a, _ in train).most_common(1)[0][0]
    by_question = defaultdict(Counter)
    for q, a, _ in train:
        by_question[q][a] += 1
    best = {q: c.most_common(1)[0][0] for q, c in by_question.items()}

    def scores(guess) -> dict:
        hits = defaultdict(list)
        for q, a, _ in test:
            kind, hit = question_kind(a), guess(q) == a
            hits["overall"].append(hit)
            hits[kind].append(hit)
            if kind != "yes/no":
                hits["colour+shape"].append(hit)
        return {key: round(sum(v) / len(v), 4) for key, v in hits.items()}

    return {"fitted_on": "train", "scored_on": "test", "questions": {"train": len(train), "test": len(test)},
            "majority": {"answer": majority, "accuracy": scores(lambda q: majority)},
            "question_only": {"accuracy": scores(lambda q: best.get(q, majority))}}


# ---------------------------------------------------------------------------------------------------------------
# captions/shapes


def shape_and_colour(questions: list[tuple[str, str]]) -> tuple[str | None, str | None]:
    """(colour, shape) of one easy-VQA image as its (question, answer) pairs state them (None: not stated).

    A colour or shape answer states it; a colour or shape named in a question that takes such an answer
    ("what color is the triangle?") does too; a yes/no question states its word present when the answer is
    yes and the question is not negated ("is there not ...", "is no ..."), or no and it is. Raises
    :class:`DataFormatError` when the questions state two colours or two shapes, or one both present and absent.
    """
    present, absent = set(), set()
    for question, answer in questions:
        words = question.rstrip("?").split()
        named = [w for w in words if w in COLOURS or w in SHAPES]
        if answer in ("yes", "no"):
            negated = "not" in words or "no" in words
            (present if (answer == "yes") != negated else absent).update(named)
        else:
            present.update(named + [answer])
    colours, shapes = present & set(COLOURS), present & set(SHAPES)
    if len(colours) > 1 or len(shapes) > 1 or present & absent:
        raise DataFormatError(f"easy-VQA questions {questions[:3]}... state colours {sorted(colours)}, shapes "
                              f"{sorted(shapes)}, present and absent {sorted(present & absent)}")
    return next(iter(colours), None), next(iter(shapes), None)


# easy-VQA draws each shape in one of these exact colours on a light background
_PALETTE = {(0, 0, 0): "black", (0, 0, 255): "blue", (165, 42, 42): "brown", (128, 128, 128): "gray",
            (0, 255, 0): "green", (255, 0, 0): "red", (0, 128, 128): "teal", (255, 255, 0): "yellow"}


def pixel_shape_and_colour(png: bytes) -> tuple[str | None, str]:
    """(colour, shape) of an easy-VQA image read from its pixels: the colour is the second most frequent pixel
    value (after the background) if it is one of easy-VQA's, else None; the shape follows from how much of its
    bounding box the shape fills: a rectangle all (>= 0.905), a circle pi/4 (0.71 .. 0.905), a triangle half.
    On the images whose questions state them, these agree with the questions every time (checked on writing)."""
    import io

    import numpy as np
    from PIL import Image

    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(np.int32)
    packed = (pixels[..., 0] << 16) | (pixels[..., 1] << 8) | pixels[..., 2]
    values, counts = np.unique(packed, return_counts=True)  # one int per colour: much faster than axis=0
    order = np.argsort(-counts)
    background, ink = (np.array([(int(values[order[k]]) >> bits) & 255 for bits in (16, 8, 0)]) for k in (0, 1))
    ys, xs = np.nonzero(np.abs(pixels - background).sum(axis=2) > 60)
    fill = len(ys) / ((ys.max() - ys.min() + 1) * (xs.max() - xs.min() + 1))
    shape = "rectangle" if fill >= 0.905 else "circle" if fill >= 0.71 else "triangle"
    return _PALETTE.get(tuple(int(v) for v in ink)), shape


def _image_captions(rows, images: dict[int, dict]) -> tuple[dict[int, tuple[str, str]], int]:
    """({image_id: (colour, shape)}, how many needed the pixels): stated by the questions, else read from the
    pixels; raises when the pixels and the questions disagree, or an image gets no colour or shape."""
    per_image = defaultdict(list)
    for q, a, i in rows:
        per_image[i].append((q, a))
    found, from_pixels = {}, 0
    for i in sorted(images):
        stated = shape_and_colour(per_image[i])
        seen = pixel_shape_and_colour(images[i]["bytes"])
        if any(s is not None and s != p for s, p in zip(stated, seen)):
            raise DataFormatError(f"easy-VQA image {i}: questions say {stated}, pixels {seen}")
        colour, shape = (s if s is not None else p for s, p in zip(stated, seen))
        if colour is None:
            raise DataFormatError(f"easy-VQA image {i}: no colour in its questions nor its pixels")
        from_pixels += None in stated
        found[i] = (colour, shape)
    return found, from_pixels


def _shape_captions(limit: int | None = None, progress: bool = True):
    """(DatasetDict of image, caption, colour, shape, image_id; the most-common-caption baseline)."""
    import datasets

    features = datasets.Features(image=datasets.Image(), caption=datasets.Value("string"),
                                 colour=datasets.Value("string"), shape=datasets.Value("string"),
                                 image_id=datasets.Value("int32"))
    splits, captions, from_pixels = {}, {}, {}
    for split in ("train", "test"):
        rows, paths = _easy_vqa_questions(split, limit)
        images = _read_images(paths, f"easy-VQA {split}", progress)
        found, from_pixels[split] = _image_captions(rows, images)
        captions[split] = [f"a {c} {s}" for c, s in found.values()]
        splits[split] = datasets.Dataset.from_dict(
            {"image": [images[i] for i in found], "caption": captions[split],
             "colour": [c for c, _ in found.values()], "shape": [s for _, s in found.values()],
             "image_id": list(found)}, features=features)
    common = Counter(captions["train"]).most_common(1)[0][0]
    exact = sum(c == common for c in captions["test"]) / len(captions["test"])
    baselines = {"fitted_on": "train", "scored_on": "test", "images": {k: len(v) for k, v in captions.items()},
                 "completed_from_pixels": from_pixels,
                 "distinct_captions": len(set(captions["train"]) | set(captions["test"])),
                 "most_common_caption": {"caption": common, "exact_match": round(exact, 4)}}
    return datasets.DatasetDict(splits), baselines


_BUILDERS = {"text/pydoc": _pydoc, "vqa/easy-vqa": _easy_vqa, "captions/shapes": _shape_captions}

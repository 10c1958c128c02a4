"""Read text, caption and VQA data where users keep it, offline, as ``datasets.Dataset``s with the agreed columns.

=========  ==========================================================
task       columns (in this order; any other column is dropped)
=========  ==========================================================
text       ``text`` (str)
captions   ``image`` (PIL image, as stored), ``caption`` (str)
vqa        ``image``, ``question``, ``answer`` (str), ``kind`` (str)
=========  ==========================================================

A ``source`` is the name of a default that ``gato data text|captions|vqa`` wrote (``text/pydoc``,
``captions/shapes``, ``vqa/easy-vqa``: read from :func:`data_root` ``/NAME``) or a local path in one of the
layouts :func:`load_text` lists. Splits are ``train`` and ``test``; a source without a test split (or a
validation one, taken in its place) gets a held-out share: :data:`HOLDOUT_SHARE` of its rows, chosen by a
permutation seeded with :data:`HOLDOUT_SEED`, the same on every call, so train and test never overlap.

Nothing is downloaded: ``datasets`` is switched to offline mode before use and only its local builders
(``parquet``, ``json``, ``text``, ``imagefolder``, ``webdataset``) are called, caching their Arrow files under
``data_root()/.cache``.
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

__all__ = ["DEFAULTS", "DEFAULT_BY_KIND", "CorpusError",
           "DataFormatError", "EmptyDataError", "HOLDOUT_SEED", "HOLDOUT_SHARE", "MissingDataError",
           "data_root", "load_captions", "load_text", "load_vqa", "read_okvqa", "recorded_baselines", "resolve_source"]

HOLDOUT_SHARE = 0.1
HOLDOUT_SEED = 0
BASELINES_FILE = "baselines.json"
DEFAULTS = {
    "text/pydoc": "Python's standard-library reference documentation (pydoc_data.topics), one document per topic",
    "captions/shapes": "easy-VQA's 64x64 images of one coloured shape, captioned 'a <colour> <shape>'",
    "vqa/easy-vqa": "easy-VQA (MIT): 64x64 shape images, questions of kind yes/no, colour or shape, 13 answers",
}
"""The defaults ``gato data text|captions|vqa`` make (``gato.data.default_corpora`` builds them), by name under
:func:`data_root`; here so that a missing one is named with its command without importing the builders."""
DEFAULT_BY_KIND = {"text": "text/pydoc", "captions": "captions/shapes", "vqa": "vqa/easy-vqa"}
"""The default of each kind of corpus."""

LAYOUTS = ("a directory written by Dataset.save_to_disk or DatasetDict.save_to_disk; parquet, jsonl or txt files "
           "(a file, a directory of them or a glob); an imagefolder directory with metadata.jsonl; an OK-VQA or "
           "VQA v2 directory as downloaded (OpenEnded_mscoco_train2014_questions.json + "
           "mscoco_train2014_annotations.json, or v2_OpenEnded_mscoco_train2014_questions.json + "
           "v2_mscoco_train2014_annotations.json, val2014 likewise, images train2014/COCO_train2014_*.jpg); a "
           "directory of webdataset .tar shards (KEY.jpg + KEY.txt)")
VQA_FILES = ("OK-VQA: OpenEnded_mscoco_<split>_questions.json and mscoco_<split>_annotations.json; VQA v2: "
             "v2_OpenEnded_mscoco_<split>_questions.json and v2_mscoco_<split>_annotations.json (<split>: train2014, "
             "val2014); images COCO_<split>_<12-digit image id>.jpg anywhere below (e.g. train2014/)")
_VQA_QUESTIONS = re.compile(r"^(v2_)?OpenEnded_mscoco_(.+)_questions\.json$")
COLUMNS = {"text": ("text",), "captions": ("image", "caption"), "vqa": ("image", "question", "answer", "kind")}
_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif")
_FILE_BUILDERS = {".parquet": "parquet", ".jsonl": "json", ".json": "json", ".txt": "text"}
_HELD_OUT_WORDS = re.compile(r"(^|[/_.\-])(test|validation|valid|val|dev)([/_.\-\d]|$)")


class CorpusError(ValueError):
    """A text or image data source that cannot be read as asked (the CLI prints it in one line)."""


class MissingDataError(CorpusError):
    """A source that is not there (a path, a default not yet made, an image a question refers to)."""


class EmptyDataError(CorpusError):
    """A source (or one of its splits) with no rows."""


class DataFormatError(CorpusError):
    """A source whose columns or files do not hold what the task needs."""


def data_root() -> Path:
    """Where the defaults live and names resolve: ``$GATO_DATASETS_PATH``, default ``~/.gato/datasets``."""
    return Path(os.environ.get("GATO_DATASETS_PATH") or Path.home() / ".gato" / "datasets").expanduser()


def resolve_source(source: str | os.PathLike) -> Path:
    """The local path of ``source``: an existing path as given, else ``data_root()/source``.

    A glob (``data/*.parquet``) is returned as given when it matches something. Raises
    :class:`MissingDataError` naming the accepted layouts (and, for a default, the command that makes it).
    """
    path = Path(source).expanduser()
    if path.exists() or (_is_glob(str(source)) and _glob(str(source))):
        return path
    named = data_root() / str(source)
    if named.exists():
        return named
    if str(source) in DEFAULTS:
        raise MissingDataError(f"the default {source} is not made yet (no {named}): make it with "
                               f"`gato data {str(source).split('/')[0]}`")
    raise MissingDataError(f"no data at {source} (nor {named}); expected {LAYOUTS}")


def load_text(source: str | os.PathLike, split: str = "train"):
    """The ``split`` ("train" or "test") of a text corpus: a Dataset with one column ``text``, one document a row.

    Layouts: a ``save_to_disk`` directory; parquet or jsonl files with a ``text`` column; ``.txt`` files, one
    file a document. Files (or directories) whose path names ``test``/``validation`` make the test split;
    otherwise, and for a saved Dataset (or DatasetDict without "test"/"validation"), the test split is a
    held-out :data:`HOLDOUT_SHARE` of the rows (seeded, deterministic). Raises a :class:`CorpusError`.
    """
    return _load(source, split, "text")


def load_captions(source: str | os.PathLike, split: str = "train"):
    """The ``split`` of a caption corpus: a Dataset with ``image`` (PIL, as stored) and ``caption`` (str).

    Layouts: a ``save_to_disk`` directory, parquet or jsonl files (images as image features or as paths
    relative to the source's directory), an ``imagefolder`` directory with ``metadata.jsonl``, or a tree of
    img2dataset webdataset shards (``KEY.jpg`` + ``KEY.txt``; every shard of every subdirectory is read). The
    caption is the column ``caption``, else ``text`` (``txt`` in shards). Splits and held-out share as in
    :func:`load_text`.
    """
    return _load(source, split, "captions")


def load_vqa(source: str | os.PathLike, split: str = "train"):
    """The ``split`` of a VQA corpus: a Dataset with ``image`` (PIL), ``question``, ``answer`` and ``kind``.

    Layouts: a ``save_to_disk`` directory, parquet or jsonl files, an ``imagefolder`` with ``metadata.jsonl``,
    or an OK-VQA or VQA v2 directory as downloaded (:data:`VQA_FILES`, read by :func:`read_okvqa`; train2014
    files make "train", val2014 "test"; test2015 questions, which come without answers, are skipped). The answer
    is the column ``answer``, else the most common of ``answers`` (a list of strings or of {"answer": ...});
    ``kind`` is kept when present, else "". Splits and held-out share as in :func:`load_text`.
    """
    return _load(source, split, "vqa")


def recorded_baselines(source: str | os.PathLike) -> dict:
    """The ``baselines.json`` saved beside a default's data (e.g. majority-answer accuracy); {} when none."""
    try:
        path = resolve_source(source)
    except MissingDataError:
        return {}
    file = path / BASELINES_FILE
    return json.loads(file.read_text()) if file.is_file() else {}


def read_okvqa(questions_json: str | os.PathLike, annotations_json: str | os.PathLike,
               image_dir: str | os.PathLike, images: dict | None = None):
    """OK-VQA or VQA v2 as their files come: a Dataset (image, question, answer, kind) with one row per question.

    ``questions_json``: ``{"questions": [{"image_id", "question", "question_id"}, ...]}``;
    ``annotations_json``: ``{"annotations": [{"question_id", "answers": [{"answer": ...}, ...],
    "multiple_choice_answer", "answer_type", ...}, ...]}``. The answer is ``multiple_choice_answer`` (VQA's
    most frequent answer) when given, else the most common of the answers (ties: the first given); ``kind``
    is ``answer_type`` ("yes/no", "number", "other"), "" when absent. Images ``COCO_<subtype>_<12-digit
    image_id>.jpg`` anywhere under ``image_dir`` (``images``: a prepared file name -> path map). Every question
    is kept; a question without annotation or image raises an error.
    """
    import datasets

    questions = json.loads(Path(questions_json).read_text())
    annotations = json.loads(Path(annotations_json).read_text())
    subtype = questions.get("data_subtype") or _okvqa_subtype(Path(questions_json).name)
    answers = {a["question_id"]: a.get("multiple_choice_answer") or _most_common(a.get("answers") or [])
               for a in annotations.get("annotations", [])}
    kinds = {a["question_id"]: a.get("answer_type") or "" for a in annotations.get("annotations", [])}
    images = images if images is not None else _image_files(Path(image_dir))
    rows = {"image": [], "question": [], "answer": [], "kind": []}
    for q in questions.get("questions", []):
        if not answers.get(q["question_id"]):
            raise DataFormatError(f"VQA question {q['question_id']} has no answers in {annotations_json}")
        name = f"COCO_{subtype}_{int(q['image_id']):012d}.jpg"
        if name not in images:
            raise MissingDataError(f"VQA image {name} (question {q['question_id']}) is not under {image_dir}")
        for key, value in (("image", str(images[name])), ("question", q["question"]),
                           ("answer", answers[q["question_id"]]), ("kind", kinds[q["question_id"]])):
            rows[key].append(value)
    features = datasets.Features(image=datasets.Image(), question=datasets.Value("string"),
                                 answer=datasets.Value("string"), kind=datasets.Value("string"))
    return datasets.Dataset.from_dict(rows, features=features)


# ---------------------------------------------------------------------------------------------------------------
# reading a source into raw splits


def _load(source, split: str, task: str):
    if split not in ("train", "test"):
        raise CorpusError(f"unknown split {split!r}: use 'train' or 'test'")
    _offline()
    path = resolve_source(source)
    splits = _read_splits(path, task)
    dataset = _conform(splits[split], task, source)
    if len(dataset) == 0:
        raise EmptyDataError(f"the {split} split of {source} has no rows")
    return dataset


def _offline() -> None:
    """Make ``datasets`` (and the hub client under it) refuse any download, whatever was imported before."""
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import datasets
    import huggingface_hub.constants

    datasets.config.HF_HUB_OFFLINE = True
    datasets.config.HF_DATASETS_OFFLINE = True
    huggingface_hub.constants.HF_HUB_OFFLINE = True
    datasets.disable_progress_bars()


def _read_splits(path: Path, task: str) -> dict:
    """{"train": Dataset, "test": Dataset} of the raw columns, whatever the layout."""
    if path.is_dir() and ((path / "dataset_dict.json").is_file() or (path / "state.json").is_file()):
        import datasets

        try:
            return _two_splits(datasets.load_from_disk(str(path)), path)
        except IndexError as e:  # datasets cannot read back a saved split of no rows
            raise EmptyDataError(f"{path}: a saved split has no rows") from e
    if path.is_dir() and _vqa_files(path):
        return _two_splits(_okvqa_splits(path), path)
    if path.is_dir() and list(path.glob("**/*.tar")):
        return _two_splits(_builder_splits("webdataset", sorted(path.glob("**/*.tar")), path), path)
    if path.is_dir() and list(path.glob("**/metadata.jsonl")) and _image_files(path):
        import datasets

        return _two_splits(datasets.load_dataset("imagefolder", data_dir=str(path), cache_dir=_cache_dir()), path)
    files = _data_files(path)
    builders = {_FILE_BUILDERS[f.suffix.lower()] for f in files}
    if len(builders) > 1:
        raise DataFormatError(f"{path} mixes file types ({', '.join(sorted({f.suffix for f in files}))}): "
                              f"keep one of .parquet, .jsonl, .txt")
    (builder,) = builders
    if builder == "text" and task != "text":
        raise DataFormatError(f"{path}: .txt files hold text only; {task} needs images ({LAYOUTS})")
    base = path if path.is_dir() else (path.parent if path.exists() else Path(_glob_base(str(path))))
    return _two_splits(_builder_splits(builder, files, base), path, base=base)


def _data_files(path: Path) -> list[Path]:
    """The parquet/jsonl/txt files of a file, a directory (recursively) or a glob."""
    if path.is_file():
        candidates = [path]
    elif path.is_dir():
        candidates = sorted(p for p in path.glob("**/*") if p.is_file())
    else:
        candidates = [Path(p) for p in _glob(str(path)) if Path(p).is_file()]
    files = [f for f in candidates if f.suffix.lower() in _FILE_BUILDERS and not f.name.startswith(".")]
    if not files:
        raise MissingDataError(f"no data files in {path}; expected {LAYOUTS}")
    return files


def _builder_splits(builder: str, files: list[Path], base: Path) -> dict:
    """Files read with a local ``datasets`` builder; files whose path (below ``base``) names test/validation
    make the test split when there are others for train, else all make one split."""
    import datasets

    held = [f for f in files if _HELD_OUT_WORDS.search(_relative(f, base).lower())]
    kept = [f for f in files if f not in held]
    data_files = {"train": [str(f) for f in kept], "test": [str(f) for f in held]} if held and kept \
        else {"train": [str(f) for f in files]}
    kwargs = {"sample_by": "document"} if builder == "text" else {}
    try:
        return datasets.load_dataset(builder, data_files=data_files, cache_dir=_cache_dir(), **kwargs)
    except ValueError as e:
        if "corresponds to no data" in str(e):  # datasets' words for a split whose files hold no rows
            raise EmptyDataError(f"{base}: the files of a split hold no rows") from e
        raise


def _vqa_files(path: Path) -> list[Path]:
    """The files of a directory that only an OK-VQA or VQA v2 download holds (questions, annotations)."""
    return [p for p in path.glob("**/*mscoco_*.json") if _VQA_QUESTIONS.match(p.name)
            or re.match(r"^(v2_)?mscoco_.+_annotations\.json$", p.name)]


def _okvqa_splits(path: Path) -> dict:
    """{"train": ..., "test": ...} of an OK-VQA or VQA v2 directory: train2014 -> train, val2014 (any other
    subtype with answers) -> test; test-set questions, published without answers, are skipped."""
    images = _image_files(path)
    splits, unanswered = {}, []
    questions_files = sorted(p for p in path.glob("**/*OpenEnded_mscoco_*_questions.json")
                             if _VQA_QUESTIONS.match(p.name))
    if not questions_files:
        found = ", ".join(sorted(p.name for p in _vqa_files(path)))
        raise DataFormatError(f"{path} holds VQA files ({found}) but no questions file; expected {VQA_FILES}")
    for questions in questions_files:
        v2, subtype = _VQA_QUESTIONS.match(questions.name).groups()
        prefix = v2 or ""
        names = (f"{prefix}mscoco_{subtype}_annotations.json", f"{prefix}mscoco_{subtype}.json")
        annotations = sorted(a for name in names for a in path.glob(f"**/{name}"))
        if not annotations:
            if subtype.startswith("test"):  # VQA's test questions come without answers
                continue
            unanswered.append(f"{questions.name} (expected {names[0]} beside it)")
            continue
        key = "train" if subtype.startswith("train") else "test"
        splits.setdefault(key, []).append(read_okvqa(questions, annotations[0], path, images=images))
    if unanswered:
        raise MissingDataError(f"{path}: no annotations for {'; '.join(unanswered)}; expected {VQA_FILES}")
    if not splits:
        raise MissingDataError(f"{path} holds only test-set VQA questions, which have no answers; expected "
                               f"{VQA_FILES}")
    import datasets

    return {key: datasets.concatenate_datasets(parts) for key, parts in splits.items()}


def _two_splits(data, path: Path, base: Path | None = None) -> dict:
    """A Dataset or a dict of them as {"train", "test"}: the given test (or validation) split, else a held-out
    share of train's rows."""
    import datasets

    if isinstance(data, datasets.Dataset):
        data = {"train": data}
    data = dict(data)
    test = next((data[k] for k in ("test", "validation", "valid", "val") if k in data), None)
    train = data.get("train")
    if train is None:
        rest = [k for k in data if data[k] is not test]
        if len(rest) != 1:
            raise DataFormatError(f"{path}: splits {sorted(data)}; expected 'train' (and 'test')")
        train = data[rest[0]]
    if test is None:
        train, test = _hold_out(train, path)
    return {"train": train, "test": test}


def _hold_out(dataset, path: Path):
    """(train, test): a seeded, deterministic :data:`HOLDOUT_SHARE` of the rows held out, order kept."""
    import numpy as np

    n = len(dataset)
    if n < 2:
        raise EmptyDataError(f"{path} has {n} row(s): at least 2 are needed to hold some out for testing")
    n_test = max(1, round(n * HOLDOUT_SHARE))
    order = np.random.default_rng(HOLDOUT_SEED).permutation(n)
    return dataset.select(np.sort(order[n_test:])), dataset.select(np.sort(order[:n_test]))


# ---------------------------------------------------------------------------------------------------------------
# mapping raw columns onto the agreed ones


def _conform(dataset, task: str, source):
    """``dataset`` with exactly the task's columns, named and typed as agreed."""
    import datasets

    columns = list(dataset.column_names)
    if task == "text":
        dataset = _rename(dataset, _pick(columns, ("text",), source, "a text column"), "text")
    else:
        dataset = _with_image(dataset, _pick(columns, ("image", "img", "jpg", "jpeg", "png", "webp"), source,
                                             "an image column"), source)
        if task == "captions":
            dataset = _rename(dataset, _pick(columns, ("caption", "text", "txt"), source,
                                             "a caption column ('caption' or 'text')"), "caption")
        else:
            dataset = _rename(dataset, _pick(columns, ("question",), source, "a 'question' column"), "question")
            dataset = _with_answer(dataset, columns, source)
            if "kind" not in columns:
                dataset = dataset.add_column("kind", [""] * len(dataset),
                                             feature=datasets.Value("string"))
    return dataset.select_columns(list(COLUMNS[task]))


def _pick(columns: list[str], names: tuple[str, ...], source, what: str) -> str:
    found = next((name for name in names if name in columns), None)
    if found is None:
        raise DataFormatError(f"{source} has no {what}: columns found {columns}")
    return found


def _rename(dataset, column: str, name: str):
    if column == name:
        return dataset
    if name in dataset.column_names:
        dataset = dataset.remove_columns(name)
    return dataset.rename_column(column, name)


def _with_image(dataset, column: str, source):
    """The image column as a ``datasets.Image`` feature (PIL on access); path strings resolve against the
    source's directory."""
    import datasets

    dataset = _rename(dataset, column, "image")
    feature = dataset.features["image"]
    if isinstance(feature, datasets.Image):
        return dataset
    if feature == datasets.Value("string"):
        base = _base_dir(source)
        paths = [p if os.path.isabs(p) else str(base / p) for p in dataset["image"]]
        missing = next((p for p in paths if not os.path.exists(p)), None)
        if missing is not None:
            raise MissingDataError(f"{source}: image {missing} is missing")
        dataset = dataset.remove_columns("image").add_column("image", paths)
    return dataset.cast_column("image", datasets.Image())


def _with_answer(dataset, columns: list[str], source):
    """A string column ``answer``: given, or the most common of ``answers``."""
    if "answer" in columns:
        return dataset
    if "answers" not in columns:
        raise DataFormatError(f"{source} has no answers: expected a column 'answer' or 'answers', found {columns}")
    answers = [_most_common(a or []) for a in dataset["answers"]]
    if not all(answers):
        raise DataFormatError(f"{source}: {answers.count('')} question(s) have an empty 'answers' list")
    return dataset.remove_columns("answers").add_column("answer", answers)


def _most_common(answers) -> str:
    """The most common answer (ties: the first given) of strings or {"answer": str} dicts; "" for none."""
    values = [a["answer"] if isinstance(a, dict) else a for a in answers]
    return Counter(values).most_common(1)[0][0] if values else ""


# ---------------------------------------------------------------------------------------------------------------
# small helpers


def _cache_dir() -> str:
    """Where ``datasets`` keeps the Arrow files it builds from raw files: beside the data, not ~/.cache."""
    return str(data_root() / ".cache")


def _image_files(path: Path) -> dict[str, Path]:
    return {p.name: p for p in path.glob("**/*") if p.suffix.lower() in _IMAGE_SUFFIXES and p.is_file()}


def _okvqa_subtype(name: str) -> str:
    match = _VQA_QUESTIONS.match(name)
    if not match:
        raise DataFormatError(f"{name}: expected a VQA questions file; {VQA_FILES}")
    return match.group(2)


def _is_glob(text: str) -> bool:
    return any(c in text for c in "*?[")


def _glob(pattern: str) -> list[str]:
    import glob

    return sorted(glob.glob(os.path.expanduser(pattern), recursive=True))


def _glob_base(pattern: str) -> str:
    """The directory part of a glob before its first wildcard."""
    head = re.split(r"[*?\[]", os.path.expanduser(pattern), maxsplit=1)[0]
    return head if head.endswith(os.sep) else os.path.dirname(head) or "."


def _base_dir(source) -> Path:
    path = resolve_source(source)
    if path.is_dir():
        return path
    return path.parent if path.exists() else Path(_glob_base(str(path)))


def _relative(file: Path, base: Path) -> str:
    try:
        return str(file.relative_to(base))
    except ValueError:
        return file.name

"""gato.data.corpora reads every layout offline with the agreed columns; gato.data.default_corpora writes the
defaults and their baselines."""

from __future__ import annotations

import io
import json
import tarfile

import pytest

datasets = pytest.importorskip("datasets")
Image = pytest.importorskip("PIL.Image")

from gato.data import corpora  # noqa: E402
from gato.data.corpora import (  # noqa: E402
    DataFormatError,
    EmptyDataError,
    MissingDataError,
    load_captions,
    load_text,
    load_vqa,
    recorded_baselines,
)


def png(colour=(255, 0, 0), size=8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def jpg(colour=(0, 0, 255), size=8) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (size, size), colour).save(buffer, format="JPEG")
    return buffer.getvalue()


def docs(n):
    return [f"document {i} says hello {i * i}" for i in range(n)]


def test_save_to_disk_dict_keeps_its_splits(tmp_path, no_network):
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": docs(5), "extra": list(range(5))}),
                          "test": datasets.Dataset.from_dict({"text": ["held", "out"], "extra": [0, 1]})}
                         ).save_to_disk(str(tmp_path / "d"))
    train, test = load_text(tmp_path / "d"), load_text(str(tmp_path / "d"), "test")
    assert train.column_names == ["text"] and train["text"] == docs(5)
    assert test["text"] == ["held", "out"]


def test_single_dataset_holds_out_a_deterministic_share(tmp_path):
    datasets.Dataset.from_dict({"text": docs(50)}).save_to_disk(str(tmp_path / "d"))
    train, test = load_text(tmp_path / "d"), load_text(tmp_path / "d", "test")
    assert len(test) == 5 and len(train) == 45
    assert set(train["text"]).isdisjoint(test["text"]) and set(train["text"]) | set(test["text"]) == set(docs(50))
    assert load_text(tmp_path / "d", "test")["text"] == test["text"]  # same share every call
    datasets.DatasetDict({"train": datasets.Dataset.from_dict({"text": docs(50)})}).save_to_disk(str(tmp_path / "e"))
    assert load_text(tmp_path / "e", "test")["text"] == test["text"]


def test_parquet_jsonl_and_globs(tmp_path, no_network):
    datasets.Dataset.from_dict({"text": docs(20)}).to_parquet(str(tmp_path / "a.parquet"))
    assert len(load_text(tmp_path / "a.parquet")) + len(load_text(tmp_path / "a.parquet", "test")) == 20
    (tmp_path / "j").mkdir()
    for name, rows in (("train.jsonl", docs(6)), ("test.jsonl", ["x", "y"])):
        (tmp_path / "j" / name).write_text("".join(json.dumps({"text": t}) + "\n" for t in rows))
    assert load_text(tmp_path / "j")["text"] == docs(6)  # a file named test makes the test split
    assert load_text(tmp_path / "j", "test")["text"] == ["x", "y"]
    assert load_text(str(tmp_path / "j" / "*.jsonl"), "test")["text"] == ["x", "y"]


def test_txt_files_are_one_document_each(tmp_path):
    (tmp_path / "t").mkdir()
    for i in range(12):
        (tmp_path / "t" / f"doc{i:02d}.txt").write_text(f"line one of {i}\nline two\n\nafter a blank line\n")
    train, test = load_text(tmp_path / "t"), load_text(tmp_path / "t", "test")
    assert len(train) + len(test) == 12 and len(test) == 1
    assert all(t.count("\n") >= 3 and t.startswith("line one of") for t in train["text"])


def test_imagefolder_captions_and_vqa(tmp_path):
    root = tmp_path / "imgs"
    (root / "train").mkdir(parents=True)
    (root / "test").mkdir()
    for split, n in (("train", 4), ("test", 2)):
        lines = []
        for i in range(n):
            (root / split / f"{i}.png").write_bytes(png((i * 40, 0, 0), size=5 + i))
            lines.append(json.dumps({"file_name": f"{i}.png", "text": f"a picture {i}", "question": "what?",
                                     "answers": ["x", f"a{i}", f"a{i}"]}))
        (root / split / "metadata.jsonl").write_text("\n".join(lines) + "\n")
    captions = load_captions(root)
    assert captions.column_names == ["image", "caption"] and len(captions) == 4
    assert sorted(captions["caption"]) == [f"a picture {i}" for i in range(4)]
    assert {im.size for im in captions["image"]} == {(5, 5), (6, 6), (7, 7), (8, 8)}  # as stored, not resized
    vqa = load_vqa(root, "test")
    assert vqa.column_names == ["image", "question", "answer", "kind"]
    assert sorted(vqa["answer"]) == ["a0", "a1"] and set(vqa["kind"]) == {""}


def test_jsonl_vqa_with_image_paths(tmp_path):
    (tmp_path / "pics").mkdir()
    rows = []
    for i in range(10):
        (tmp_path / "pics" / f"{i}.png").write_bytes(png())
        rows.append({"image": f"pics/{i}.png", "question": f"q{i}?", "answer": "yes", "kind": "yes/no"})
    (tmp_path / "vqa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    train = load_vqa(tmp_path / "vqa.jsonl")
    assert len(train) == 9 and train[0]["image"].size == (8, 8) and set(train["kind"]) == {"yes/no"}


def write_okvqa(root, subtype, n, answers_of):
    """An OK-VQA folder as its download lays it out: the two JSON files of a split at the top, its images in
    a folder of the split's name, with the real file names and schemas (OK-VQA has no multiple_choice_answer)."""
    images = root / subtype
    images.mkdir(parents=True)
    questions, annotations = [], []
    for qid in range(n):
        image_id = 100 + qid // 2  # two questions share an image
        (images / f"COCO_{subtype}_{image_id:012d}.jpg").write_bytes(jpg())
        questions.append({"image_id": image_id, "question": f"question {qid}?", "question_id": qid})
        annotations.append({"image_id": image_id, "answer_type": "other", "question_type": "other",
                            "question_id": qid, "confidence": 3,
                            "answers": [{"answer_id": j + 1, "raw_answer": a, "answer_confidence": "yes", "answer": a}
                                        for j, a in enumerate(answers_of(qid))]})
    (root / f"OpenEnded_mscoco_{subtype}_questions.json").write_text(json.dumps(
        {"license": {}, "data_subtype": subtype, "task_type": "Open-Ended", "questions": questions,
         "data_type": "mscoco", "info": {}}))
    (root / f"mscoco_{subtype}_annotations.json").write_text(json.dumps(
        {"license": {}, "data_subtype": subtype, "annotations": annotations, "data_type": "mscoco", "info": {}}))


def write_vqa_v2(root, subtype, rows, with_annotations=True):
    """A VQA v2 folder as downloaded: v2_OpenEnded_mscoco_<split>_questions.json, v2_mscoco_<split>_annotations.json
    and <split>/COCO_<split>_<id>.jpg; ``rows``: (question, answers, multiple_choice_answer, answer_type)."""
    images = root / subtype
    images.mkdir(parents=True)
    questions, annotations = [], []
    for i, (question, answers, chosen, kind) in enumerate(rows):
        image_id, qid = 458752 + i, 458752000 + i
        (images / f"COCO_{subtype}_{image_id:012d}.jpg").write_bytes(jpg(size=12))
        questions.append({"image_id": image_id, "question": question, "question_id": qid})
        annotations.append({"question_type": "what is", "multiple_choice_answer": chosen,
                            "answers": [{"answer": a, "answer_confidence": "yes", "answer_id": j + 1}
                                        for j, a in enumerate(answers)],
                            "image_id": image_id, "answer_type": kind, "question_id": qid})
    (root / f"v2_OpenEnded_mscoco_{subtype}_questions.json").write_text(json.dumps(
        {"info": {}, "task_type": "Open-Ended", "data_type": "mscoco", "license": {}, "data_subtype": subtype,
         "questions": questions}))
    if with_annotations:
        (root / f"v2_mscoco_{subtype}_annotations.json").write_text(json.dumps(
            {"info": {}, "license": {}, "data_subtype": subtype, "annotations": annotations}))


def test_okvqa_keeps_every_question(tmp_path, no_network):
    write_okvqa(tmp_path, "train2014", 5, lambda q: ["other", f"ans{q}", f"ans{q}", "x"])
    write_okvqa(tmp_path, "val2014", 3, lambda q: [f"val{q}", "b", f"val{q}"])
    train, test = load_vqa(tmp_path), load_vqa(tmp_path, "test")
    assert train["question"] == [f"question {q}?" for q in range(5)]
    assert train["answer"] == [f"ans{q}" for q in range(5)]  # the most common answer, every entry kept
    assert test["answer"] == ["val0", "val1", "val2"] and test[0]["image"].mode == "RGB"


def test_okvqa_errors(tmp_path):
    write_okvqa(tmp_path, "val2014", 3, lambda q: [] if q == 1 else ["a"])
    with pytest.raises(DataFormatError, match="question 1 has no answers"):
        load_vqa(tmp_path, "test")
    other = tmp_path / "other"
    write_okvqa(other, "val2014", 3, lambda q: ["a"])
    (other / "val2014" / "COCO_val2014_000000000101.jpg").unlink()
    with pytest.raises(MissingDataError, match="COCO_val2014_000000000101.jpg"):
        load_vqa(other, "test")


def test_vqa_v2_folder_as_downloaded(tmp_path, no_network):
    write_vqa_v2(tmp_path, "train2014", [("What is on the table?", ["cup", "mug", "cup"], "cup", "other"),
                                         ("Is it raining?", ["no"] * 9 + ["yes"], "no", "yes/no"),
                                         ("How many dogs?", ["2", "3", "3", "2"], "2", "number")])
    write_vqa_v2(tmp_path, "val2014", [("What color is the bus?", ["red", "red"], "red", "other")])
    write_vqa_v2(tmp_path, "test2015", [("Unanswered?", [], "", "other")], with_annotations=False)
    train, test = load_vqa(tmp_path), load_vqa(tmp_path, "test")
    assert train["question"] == ["What is on the table?", "Is it raining?", "How many dogs?"]
    # multiple_choice_answer, the dataset's own choice, wins over counting (a 2-2 tie between "2" and "3")
    assert train["answer"] == ["cup", "no", "2"] and train["kind"] == ["other", "yes/no", "number"]
    assert test["answer"] == ["red"] and test[0]["image"].size == (12, 12)  # test2015 (no answers) skipped


def test_okvqa_and_vqa_v2_wrong_folders_name_the_files_expected(tmp_path):
    only_questions = tmp_path / "q"
    write_vqa_v2(only_questions, "train2014", [("Why?", ["because"], "because", "other")], with_annotations=False)
    with pytest.raises(MissingDataError, match="v2_mscoco_train2014_annotations.json") as e:
        load_vqa(only_questions)
    assert "OpenEnded_mscoco_<split>_questions.json" in str(e.value)
    only_annotations = tmp_path / "a"
    write_okvqa(only_annotations, "train2014", 3, lambda q: ["a"])
    (only_annotations / "OpenEnded_mscoco_train2014_questions.json").unlink()
    with pytest.raises(DataFormatError, match="no questions file.*mscoco_<split>_annotations.json"):
        load_vqa(only_annotations)
    only_test = tmp_path / "t"
    write_vqa_v2(only_test, "test2015", [("Unanswered?", [], "", "other")], with_annotations=False)
    with pytest.raises(MissingDataError, match="only test-set VQA questions"):
        load_vqa(only_test)


def write_shards(directory, start, n_shards, per_shard):
    directory.mkdir(parents=True)
    key = start
    for s in range(n_shards):
        with tarfile.open(directory / f"{s:05d}.tar", "w") as tar:
            for _ in range(per_shard):
                for ext, data in (("jpg", jpg()), ("txt", f"caption {key}".encode()),
                                  ("json", json.dumps({"key": key}).encode())):
                    info = tarfile.TarInfo(f"{key:09d}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
                key += 1


def test_webdataset_reads_every_shard_of_every_directory(tmp_path, no_network):
    write_shards(tmp_path / "shards" / "part-a", 0, 2, 3)
    write_shards(tmp_path / "shards" / "part-b", 100, 2, 3)
    train, test = load_captions(tmp_path / "shards"), load_captions(tmp_path / "shards", "test")
    captions = set(train["caption"]) | set(test["caption"])
    assert len(train) + len(test) == 12 and len(captions) == 12
    assert {f"caption {k}" for k in (0, 5, 100, 105)} <= captions
    assert train[0]["image"].size == (8, 8)


def test_errors_name_the_problem(tmp_path):
    with pytest.raises(MissingDataError, match="save_to_disk.*parquet"):
        load_text(tmp_path / "nowhere")
    with pytest.raises(MissingDataError, match="gato data vqa"):
        load_vqa("vqa/easy-vqa")
    with pytest.raises(MissingDataError, match="gato data text"):
        load_text("text/pydoc")
    (tmp_path / "e").mkdir()
    datasets.Dataset.from_dict({"text": docs(3)}).to_parquet(str(tmp_path / "e" / "train.parquet"))
    datasets.Dataset.from_dict({"text": []}, features=datasets.Features(text=datasets.Value("string"))).to_parquet(
        str(tmp_path / "e" / "test.parquet"))
    with pytest.raises(EmptyDataError, match="no rows"):
        load_text(tmp_path / "e", "test")
    (tmp_path / "v.jsonl").write_text((json.dumps({"image": "x.png", "question": "q?"}) + "\n") * 3)
    (tmp_path / "x.png").write_bytes(png())
    with pytest.raises(DataFormatError, match="no answers.*question"):
        load_vqa(tmp_path / "v.jsonl")
    datasets.Dataset.from_dict({"image": [png()] * 3, "label": [1, 2, 3]}).cast_column(
        "image", datasets.Image()).save_to_disk(str(tmp_path / "c"))
    with pytest.raises(DataFormatError, match=r"no a caption column.*\['image', 'label'\]"):
        load_captions(tmp_path / "c")
    assert issubclass(MissingDataError, ValueError)


def test_recorded_baselines_empty_without_file(tmp_path):
    assert recorded_baselines(tmp_path) == {} and recorded_baselines("vqa/easy-vqa") == {}


def test_pydoc_default(no_network):
    from gato.data.default_corpora import DefaultExistsError, list_defaults, make_default

    assert [row["made"] for row in list_defaults()] == [False, False, False]
    report = make_default("text/pydoc", progress=False)
    train, test = load_text("text/pydoc"), load_text("text/pydoc", "test")
    base = recorded_baselines("text/pydoc")
    assert report["rows"] == {"train": len(train), "test": len(test)}
    assert len(test) == (len(train) + len(test)) // 10 and set(train["text"]).isdisjoint(test["text"])
    assert base["documents"] == report["rows"] and sum(base["characters"].values()) > 400_000
    assert base["characters"]["test"] == sum(map(len, test["text"]))
    assert "pydoc" in [row["name"].split("/")[1] for row in list_defaults() if row["made"]]
    with pytest.raises(DefaultExistsError, match="overwrite"):
        make_default("text/pydoc")
    assert make_default("text/pydoc", overwrite=True)["rows"] == report["rows"]
    assert corpora.data_root().joinpath("text", "pydoc", "baselines.json").is_file()


def test_easy_vqa_defaults_limited(no_network):
    from gato.data.default_corpora import make_default

    report = make_default("vqa/easy-vqa", limit=40, progress=False)
    vqa = load_vqa("vqa/easy-vqa", "test")
    assert report["rows"]["test"] == len(vqa) and set(vqa["kind"]) == {"yes/no", "colour", "shape"}
    assert all(row["kind"] == "yes/no" for row in vqa.select(range(20)) if row["answer"] in ("yes", "no"))
    assert vqa[0]["image"].size == (64, 64)
    make_default("captions/shapes", limit=40, progress=False)
    captions = load_captions("captions/shapes")
    assert len(captions) == 40 and all(c.split()[0] == "a" and len(c.split()) == 3 for c in captions["caption"])


@pytest.mark.slow
def test_easy_vqa_defaults_full_baselines(no_network):
    from gato.data.default_corpora import make_default, shape_and_colour

    make_default("vqa/easy-vqa", progress=False)
    base = recorded_baselines("vqa/easy-vqa")
    assert base["questions"] == {"train": 38575, "test": 9673}
    assert base["majority"]["answer"] == "yes" and abs(base["majority"]["accuracy"]["overall"] - 0.373) < 0.001
    assert base["majority"]["accuracy"]["colour+shape"] == 0.0
    assert abs(base["question_only"]["accuracy"]["overall"] - 0.67) < 0.01
    assert abs(base["question_only"]["accuracy"]["colour+shape"] - 0.23) < 0.01
    report = make_default("captions/shapes", progress=False)
    assert report["rows"] == {"train": 4000, "test": 1000} and report["baselines"]["distinct_captions"] == 24
    # a caption agrees with what each image's questions say about it
    vqa, captions = load_vqa("vqa/easy-vqa", "test"), datasets.load_from_disk(report["path"])["test"]
    by_image = {}
    for q, a, i in zip(vqa["question"], vqa["answer"], datasets.load_from_disk(
            corpora.data_root() / "vqa/easy-vqa")["test"]["image_id"]):
        by_image.setdefault(i, []).append((q, a))
    for image_id, colour, shape in zip(captions["image_id"][:200], captions["colour"], captions["shape"]):
        stated = shape_and_colour(by_image[image_id])
        assert stated[0] in (None, colour) and stated[1] in (None, shape)


def test_shape_and_colour_from_questions():
    from gato.data.default_corpora import shape_and_colour

    assert shape_and_colour([("what color is the triangle?", "blue"), ("is there a circle?", "no")]) == \
        ("blue", "triangle")
    assert shape_and_colour([("is no red shape present?", "no")]) == ("red", None)
    with pytest.raises(DataFormatError):
        shape_and_colour([("what shape is in the image?", "circle"), ("is there a circle?", "no")])

"""One model on control, text, captions and VQA: `gato data` defaults, `gato train` with the mixture flags, the
checkpoint loaded back, `gato eval` tables and JSON, and `gato generate/caption/ask`."""

from __future__ import annotations

import json

import pytest

from gato.cli import main
from gato.language import ask

FLAGS = ["--embed_dim", "32", "--layers", "1", "--heads", "2", "--resid_mid_channels", "8", "--continuous_tokens",
         "64", "--discrete_tokens", "64", "--sequence_length", "128", "--batch_size", "8", "--training_steps", "6",
         "--max_minutes", "0", "--eval_episodes", "4", "--eval_envs", "1", "--report_to", "none", "--device", "cpu",
         "--bpe_vocab", "400", "--image_size", "16"]


@pytest.fixture
def language_defaults():
    from gato.data.default_corpora import make_default

    make_default("text/pydoc", progress=False)
    make_default("captions/shapes", limit=12, progress=False)
    make_default("vqa/easy-vqa", limit=12, progress=False)


@pytest.mark.slow
def test_train_save_load_eval_and_use_all_three_tasks_beside_a_control_task(
        language_defaults, cartpole_dataset, session_minari_root, monkeypatch, tmp_path, capsys, no_network):
    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import load_tasks

    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))
    runs = tmp_path / "runs"
    assert main(["train", *FLAGS, "--control_datasets", "test/cartpole-random-v0",
                 "--text_datasets", "text/pydoc", "--text_prop", "0.3", "--caption_datasets", "captions/shapes",
                 "--caption_prop", "0.2", "--vqa_datasets", "vqa/easy-vqa", "--vqa_prop", "0.2",
                 "--save_dir", str(runs), "--exp_name", "mix"]) == 0
    out = capsys.readouterr().out
    assert "task text/pydoc (30% of rows)" in out and "task test/cartpole-random (30% of rows)" in out
    checkpoint = runs / "mix" / "checkpoint"
    assert (checkpoint / "tokenizer.json").is_file()

    policy = GatoPolicy.from_pretrained(checkpoint)
    assert policy.vocab.text_tokens == 401  # the run's 400-id BPE, plus a pad id
    tasks = load_tasks(checkpoint, policy.vocab)
    assert [t.spec()["type"] for t in tasks] == ["control", "text", "caption", "vqa"]

    assert main(["eval", str(checkpoint), "--episodes", "4", "--envs", "1", "--out", str(tmp_path / "e.json")]) == 0
    table = capsys.readouterr().out
    for line in ("perplexity", "bigram_perplexity", "accuracy_colour_shape", "question_only_accuracy",
                 "shuffled_exact_match", "cartpole-random"):
        assert line in table
    results = json.loads((tmp_path / "e.json").read_text())["results"]
    assert results["text/pydoc"]["perplexity"] > 1 and results["vqa/easy-vqa"]["examples"] == 4

    image = tmp_path / "gray.png"
    from PIL import Image

    Image.new("L", (40, 40), 128).save(image)  # grayscale, another size: converted and resized
    assert main(["generate", str(checkpoint), "The", "--max_new_tokens", "5"]) == 0
    assert main(["caption", str(checkpoint), str(image), "--max_new_tokens", "4"]) == 0
    assert main(["ask", str(checkpoint), str(image), "what color is the shape?", "--max_new_tokens", "3"]) == 0
    answer = ask(policy, image, "what color is the shape?", image_size=16, max_new_tokens=3)
    assert answer == capsys.readouterr().out.splitlines()[-1]  # the CLI printed the same answer
    assert main(["caption", str(checkpoint), str(tmp_path / "missing.png")]) == 2
    assert "cannot read the image" in capsys.readouterr().err


def test_mixture_flags_are_checked_and_weights_split_the_batch():
    from gato.training.arguments import TrainingArgs

    args = TrainingArgs(control_datasets=["a", "b"], task_weights=[3, 1], text_datasets=["t"], text_prop=0.2,
                        vqa_datasets=["v1", "v2"], vqa_prop=0.4)
    assert args.mixture_weights() == pytest.approx([0.3, 0.1, 0.2, 0.2, 0.2])
    for bad, message in [(dict(text_datasets=["t"]), "--text_datasets and --text_prop go together"),
                         (dict(vqa_prop=0.5), "--vqa_datasets and --vqa_prop go together"),
                         (dict(text_datasets=["t"], text_prop=1.0), "leave nothing for --control_datasets"),
                         (dict(control_datasets=[], text_datasets=["t"], text_prop=0.5), "must add to 1"),
                         (dict(lora=True), "--lora adapts a pretrained model")]:
        with pytest.raises(ValueError, match=message):
            TrainingArgs(**bad).validate()


def test_gato_data_makes_a_language_default_and_lists_them(capsys):
    assert main(["data", "text"]) == 0
    assert "wrote text/pydoc" in capsys.readouterr().out
    assert main(["data", "text"]) == 2  # exists: refuses to overwrite
    assert main(["data", "list"]) == 0
    out = capsys.readouterr().out
    assert "gato data vqa" in out and "vqa/easy-vqa" in out


def test_language_examples_are_measured_in_the_runs_own_tokens(tmp_path, no_network):
    """A caption of a rare word fits the context in the run's BPE (it learns the word) but not in the built-in
    tokenizer (a byte per letter): the run builds, since the tasks are encoded only once that BPE exists."""
    import datasets
    from PIL import Image

    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    caption = " ".join(["zyxwvutsrq"] * 6)  # 66 bytes: 66 built-in tokens, a handful of BPE ones
    images = [Image.new("RGB", (8, 8), (40 * i, 0, 0)) for i in range(4)]
    split = datasets.Dataset.from_dict({"image": images, "caption": [caption] * 4})
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "captions"))
    args = TrainingArgs(control_datasets=[], caption_datasets=[str(tmp_path / "captions")], caption_prop=1.0,
                        sequence_length=40, image_size=8, patch_size=4, embed_dim=32, layers=1, heads=2,
                        bpe_vocab=300, save_dir=str(tmp_path / "runs"), exp_name="rare", report_to="none",
                        device="cpu")
    args.validate()
    (task,) = build_trainer(args).tasks
    assert task.vocab.tokenizer_name.endswith("tokenizer") and task.longest <= 40

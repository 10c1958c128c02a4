"""`gato inspect DATASET --steps N` and `--picture FILE` on real datasets: what reaches the model, token by token."""

from __future__ import annotations

import numpy as np
import pytest

from gato.cli import main
from gato.data.episodes import EncodedEpisodes, RawEpisodes, fit_codec
from gato.data.inspection import describe_steps, picture_size


@pytest.fixture
def babyai_id(babyai_dataset, session_minari_root, monkeypatch):
    """The session's 4-episode GoToRedBall dataset, visible to the CLI by its id."""
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))
    return babyai_dataset.spec.dataset_id


def _codec_and_rows(dataset, **options):
    raw = RawEpisodes.read(dataset, dataset.spec.dataset_id)
    codec = fit_codec(raw, dataset.observation_space, dataset.action_space, metadata=dataset.storage.metadata,
                      **options)
    return raw, codec, EncodedEpisodes.encode(raw, codec, dataset.spec.dataset_id)


@pytest.mark.slow
def test_inspect_steps_prints_each_timesteps_row_as_encoded_and_what_its_tokens_mean(babyai_id, babyai_dataset,
                                                                                     capsys):
    assert main(["inspect", babyai_id, "--steps", "3", "--episode", "1"]) == 0
    out = capsys.readouterr().out
    raw, codec, encoded = _codec_and_rows(babyai_dataset)
    first = encoded.starts[1]
    rows = [[int(i) for i in line.split()[1:]] for line in out.splitlines() if line.startswith("row: ")]
    assert rows == encoded.steps[first : first + 3].tolist()
    mission = raw.observations[1]["mission"][0]
    mission = mission.decode() if isinstance(mission, bytes) else str(mission)
    # the mission's text tokens, read back one by one, spell the mission
    step_lines = out.split("episode 1, timestep 0")[1].splitlines()
    mission_line = next(line for line in step_lines if line.startswith('obs["mission"]'))
    pieces = [p.strip().strip("'") for p in mission_line.split("  ")[-1].split(";")]
    assert "".join(pieces).replace(" ", "") == mission.replace(" ", "")
    for t in range(3):
        assert f"action tokens {rows[t][-1]} decode to the action {int(raw.actions[1][t])}" in out
        assert f"value {int(raw.actions[1][t])}" in out
    assert "separator" in out and "patch 1,1" in out


def test_describe_steps_with_a_task_token_equals_the_encoded_rows(babyai_dataset):
    raw, codec, encoded = _codec_and_rows(babyai_dataset, task_id=5)
    steps = describe_steps(codec, raw.observations[0], raw.actions[0], raw.rewards[0], n_steps=4)
    assert [s["tokens"] for s in steps] == encoded.steps[:4].tolist()
    assert steps[0]["fields"][0] == {"field": "task", "value": "", "ids": [codec.vocab.task(5)], "meanings": ["task 5"]}
    assert [s["action"] for s in steps] == [int(a) for a in raw.actions[0][:4]]
    # what the model reads: the window a training row shows (the mission in the first timestep only)
    from gato.batch import StepLayout

    window = StepLayout.of(codec).run(encoded.steps[:4], encoded.patches[:4], None)
    assert [i for s in steps for i in s["fed"]] == window.tokens.tolist()
    assert len(steps[1]["fed"]) == codec.tokens_per_later_step < codec.tokens_per_step


def test_describe_steps_reads_continuous_bins_back_near_the_values(cartpole_dataset):
    raw, codec, encoded = _codec_and_rows(cartpole_dataset)
    (step,) = describe_steps(codec, raw.observations[0], raw.actions[0], n_steps=1)
    assert step["tokens"] == encoded.steps[0].tolist()
    obs = step["fields"][0]
    assert obs["field"] == "obs" and len(obs["meanings"]) == 4
    centres = [float(m.split("-> ")[1]) for m in obs["meanings"]]
    # a mu-law bin is narrow near 0, where CartPole's values are: its centre is within a few percent
    assert centres == pytest.approx(raw.observations[0][0].tolist(), abs=0.02)
    assert "array" not in obs["value"]  # 4 values are printed in full


@pytest.mark.slow
def test_inspect_picture_writes_the_patch_grid_as_a_png_of_the_expected_size(babyai_id, babyai_dataset, tmp_path,
                                                                             capsys):
    import matplotlib.image

    png = tmp_path / "patches.png"
    assert main(["inspect", babyai_id, "--steps", "1", "--picture", str(png)]) == 0
    _, codec, _ = _codec_and_rows(babyai_dataset)
    (image,) = [f for f in codec.obs_fields if f.kind == "image"]
    assert image.levels > 1  # read one-hot: a panel per channel and value
    height, width = picture_size(image)
    pixels = matplotlib.image.imread(png)
    assert pixels.shape[:2] == (height, width)
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert f"({width}x{height} pixels)" in capsys.readouterr().out
    assert len(np.unique(pixels.reshape(-1, pixels.shape[-1]), axis=0)) >= 3  # patches, gaps, content


def test_inspect_steps_of_an_env_id_is_refused_in_one_line(capsys):
    assert main(["inspect", "CartPole-v1", "--steps", "2"]) == 2
    assert "not a local dataset" in capsys.readouterr().err

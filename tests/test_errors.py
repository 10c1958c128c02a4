"""Every user error gets a clear exception: its type, and a message that names the problem
and says what to do."""

from __future__ import annotations

import glob
import os
from argparse import Namespace

import gymnasium as gym
import minari
import numpy as np
import pytest
from gymnasium import spaces

from gato.codec import DatasetValueError, SpaceCodec, UnsupportedSpaceError, tokens_per_space
from gato.data.episodes import DatasetNotFoundError, RawEpisodes, load_minari
from gato.policy.gato_policy import CheckpointError, GatoPolicy
from gato.tasks.control_task import ContextTooShortError, ControlTask, SpaceMismatchError

ARGS = Namespace(patch_size=4)
TINY = dict(embed_dim=32, layers=2, heads=2, context_len=64, continuous_tokens=64, discrete_tokens=64)


def task(dataset, env_id, context_len=64, **kwargs):
    return ControlTask(env_id, gym.make(env_id), dataset, context_len, ARGS, **kwargs)


# --------------------------------------------------------------------------- spaces


def test_unsupported_space():
    space = spaces.Dict(pos=spaces.Box(-1, 1, (2,)), path=spaces.Tuple((spaces.Sequence(spaces.Discrete(4)),)))
    with pytest.raises(UnsupportedSpaceError) as info:
        SpaceCodec(space, spaces.Discrete(3))
    msg = str(info.value)
    assert 'obs["path"][0]' in msg and "Sequence(Discrete(4)" in msg  # where, and what
    assert "not supported" in msg and "Supported:" in msg and "Wrap the env" in msg  # and the fix
    assert isinstance(info.value, ValueError)
    with pytest.raises(UnsupportedSpaceError, match=r'action\["arm"\]: Graph spaces are not supported'):
        SpaceCodec(spaces.Discrete(2), spaces.Dict(arm=spaces.Graph(spaces.Discrete(3), None)))
    with pytest.raises(UnsupportedSpaceError, match="Sequence"):
        tokens_per_space(spaces.Sequence(spaces.Box(0, 1, (3,))))


def test_dataset_observation_space_does_not_match_env(cartpole_dataset):
    with pytest.raises(SpaceMismatchError) as info:
        task(cartpole_dataset, "MountainCar-v0")
    msg = str(info.value)
    assert "observation space" in msg and "test/cartpole-random-v0" in msg and "MountainCar-v0" in msg
    assert "shape (4,) vs (2,)" in msg  # dataset vs env
    assert "recover_environment" in msg  # the fix
    assert isinstance(info.value, ValueError)


class ThreeActions(gym.ActionWrapper):
    """CartPole with a third (no-op-free) action: same observations, another action space."""

    def __init__(self, env):
        super().__init__(env)
        self.action_space = spaces.Discrete(3)

    def action(self, action):
        return int(action) % 2


def test_dataset_action_space_does_not_match_env(cartpole_dataset):
    env = ThreeActions(gym.make("CartPole-v1"))
    with pytest.raises(SpaceMismatchError) as info:
        ControlTask("cartpole3", env, cartpole_dataset, 64, ARGS)
    msg = str(info.value)
    assert "action space" in msg and "Discrete(2) vs Discrete(3)" in msg and "recover_environment" in msg


def test_dataset_dict_keys_do_not_match_env(babyai_dataset):
    env = gym.wrappers.FilterObservation(gym.make("minigrid:BabyAI-GoToRedBall-v0"), ["image", "mission"])
    with pytest.raises(SpaceMismatchError, match=r"keys \['direction', 'image', 'mission'\] vs \['image', 'mission'\]"):
        ControlTask("babyai", env, babyai_dataset, 128, ARGS)


# --------------------------------------------------------------------------- context


def test_context_shorter_than_one_timestep(cartpole_dataset, babyai_dataset):
    with pytest.raises(ContextTooShortError) as info:
        task(cartpole_dataset, "CartPole-v1", context_len=5)
    msg = str(info.value)
    assert "context_len 5" in msg and "6 tokens" in msg and "context_len >= 6" in msg
    assert isinstance(info.value, ValueError)
    task(cartpole_dataset, "CartPole-v1", context_len=6)  # exactly one timestep is enough

    # BabyAI: direction 1 + 2x2 patches + mission (longest in the data: 5 tokens) + | + action
    with pytest.raises(ContextTooShortError, match=r"context_len >= 12\b"):
        ControlTask("babyai", gym.make("minigrid:BabyAI-GoToRedBall-v0"), babyai_dataset, 11, ARGS)


# --------------------------------------------------------------------------- missing dataset


def test_dataset_not_found_locally(no_network, minari_root, data):
    with pytest.raises(DatasetNotFoundError) as info:
        load_minari("nobody/nothing-v0")
    msg = str(info.value)
    assert "'nobody/nothing-v0'" in msg and str(minari_root) in msg  # what, and where it looked
    assert "MINARI_DATASETS_PATH" in msg and "gato data babyai" in msg  # what to do
    assert isinstance(info.value, FileNotFoundError)
    # a task given an id fails the same way
    with pytest.raises(DatasetNotFoundError):
        ControlTask("x", gym.make("CartPole-v1"), "nobody/nothing-v0", 64, ARGS)
    # with local datasets, the message lists them (a typo is then easy to spot)
    data.write("tests/cartpole-v0", "CartPole-v1", data.rollout("CartPole-v1", 1, 5))
    with pytest.raises(DatasetNotFoundError, match="tests/cartpole-v0"):
        load_minari("tests/cartpole-v1")


# --------------------------------------------------------------------------- checkpoints


@pytest.fixture
def checkpoint(tmp_path):
    model = GatoPolicy(**TINY)
    model.save_pretrained(tmp_path / "ckpt")
    return tmp_path / "ckpt"


def test_checkpoint_directory_missing(tmp_path):
    with pytest.raises(CheckpointError) as info:
        GatoPolicy.from_pretrained(tmp_path / "no-such-run")
    msg = str(info.value)
    assert "no-such-run" in msg and "config.json is missing" in msg and "save_pretrained" in msg


def test_checkpoint_weights_missing(checkpoint):
    (checkpoint / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="no weights at .*model.safetensors.*incomplete"):
        GatoPolicy.from_pretrained(checkpoint)


def test_checkpoint_truncated(checkpoint):
    path = checkpoint / "model.safetensors"
    blob = path.read_bytes()
    path.write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError) as info:
        GatoPolicy.from_pretrained(checkpoint)
    msg = str(info.value)
    assert "model.safetensors" in msg and "truncated" in msg and "Re-save or re-train" in msg


def test_checkpoint_config_damaged(checkpoint):
    (checkpoint / "config.json").write_text('{"embed_dim": 32, ')
    with pytest.raises(CheckpointError, match="not valid JSON"):
        GatoPolicy.from_pretrained(checkpoint)
    (checkpoint / "config.json").write_text('{"embed_dim": 32, "n_embd": 32}')
    with pytest.raises(CheckpointError, match=r"unknown fields \['n_embd'\]"):
        GatoPolicy.from_pretrained(checkpoint)


def test_checkpoint_from_another_config(checkpoint):
    other = GatoPolicy(**dict(TINY, embed_dim=64))
    before = {k: v.clone() for k, v in other.state_dict().items()}
    with pytest.raises(CheckpointError) as info:
        other.load_weights(checkpoint)
    msg = str(info.value)
    assert "different model configuration" in msg and "shape differs" in msg
    assert "from_pretrained" in msg  # the fix
    assert all((before[k] == v).all() for k, v in other.state_dict().items())  # nothing half-loaded
    deeper = GatoPolicy(**dict(TINY, layers=3))
    with pytest.raises(CheckpointError, match=r"missing: \['transformer\.blocks\.2\."):
        deeper.load_weights(checkpoint)


# --------------------------------------------------------------------------- empty datasets


def test_write_dataset_refuses_episodes_without_steps(data):
    episode = data.rollout("CartPole-v1", 1, 3)[0]
    empty = dict(observations=episode["observations"][:1], actions=[], rewards=[], terminations=[], truncations=[])
    with pytest.raises(ValueError, match="episode 1: has no steps"):
        data.write("tests/empty-v0", "CartPole-v1", [episode, empty])
    with pytest.raises(ValueError, match="No episodes"):
        data.write("tests/empty-v0", "CartPole-v1", [])


def test_write_dataset_in_chunks_keeps_order_and_indexes_links_by_creation_order(data, minari_root, monkeypatch):
    """Episodes are written WRITE_CHUNK at a time into a root group that stores its number of links (Minari
    counts them once per episode written: walking a symbol table each time made writing quadratic)."""
    import h5py

    from gato.data import writer

    monkeypatch.setattr(writer, "WRITE_CHUNK", 3)
    episodes = data.rollout("CartPole-v1", 7, 6)
    dataset = data.write("tests/chunks-v0", "CartPole-v1", iter(episodes))  # a generator is enough
    assert dataset.total_episodes == 7 and dataset.total_steps == sum(len(e["rewards"]) for e in episodes)
    for i, stored in enumerate(dataset.iterate_episodes()):
        assert stored.id == i
        np.testing.assert_array_equal(stored.observations, np.stack(episodes[i]["observations"]))
        np.testing.assert_array_equal(stored.actions, episodes[i]["actions"])
    with h5py.File(dataset.storage.data_path / "main_data.hdf5", "r") as file:
        assert file["/"].id.get_create_plist().get_link_creation_order()
        assert list(file) == [f"episode_{i}" for i in range(7)]


def test_write_dataset_shows_the_episodes_written(data, capsys):
    from gato.data.writer import write_dataset

    env = gym.make("CartPole-v1")
    write_dataset("tests/bar-v0", data.rollout("CartPole-v1", 4, 3), env_id="CartPole-v1",
                  observation_space=env.observation_space, action_space=env.action_space, progress=True)
    err = capsys.readouterr().err
    assert "writing tests/bar-v0" in err and "4/4" in err


def test_a_malformed_episode_after_the_first_chunk_leaves_nothing_on_disk(data, minari_root, monkeypatch):
    from gato.data import writer

    monkeypatch.setattr(writer, "WRITE_CHUNK", 2)
    episodes = data.rollout("CartPole-v1", 5, 4)
    episodes[4] = dict(episodes[4], actions=episodes[4]["actions"][:-1])
    with pytest.raises(ValueError, match=r"episode 4: len\(actions\)"):
        data.write("tests/late-error-v0", "CartPole-v1", episodes)
    assert not writer.local_dataset_exists("tests/late-error-v0")
    assert not [p for p in minari_root.rglob("*") if p.name.startswith(".writing-")]


def test_dataset_with_no_episodes():
    # minari itself writes a dataset of zero episodes from an empty list of buffers
    env = gym.make("CartPole-v1")
    dataset = minari.create_dataset_from_buffers(
        "tests/no-episodes-v0", [], env="CartPole-v1", action_space=env.action_space,
        observation_space=env.observation_space, author="tests", author_email="t@example.com",
        algorithm_name="none", description="empty", code_permalink="none", eval_env="CartPole-v1",
        jpeg_encoding=False)
    assert dataset.total_episodes == 0
    with pytest.raises(DatasetValueError) as info:
        ControlTask("cartpole", env, "tests/no-episodes-v0", 64, ARGS)
    msg = str(info.value)
    assert "'tests/no-episodes-v0'" in msg and "no episodes with at least one step" in msg and "regenerate" in msg


def test_dataset_whose_episodes_are_empty(data, minari_root):
    # Minari cannot write a 0-step episode through its API (its hdf5 writer indexes data[0]),
    # so write one step and cut the stored episode back to its first observation.
    import h5py

    episode = data.rollout("CartPole-v1", 1, 1)[0]
    data.write("tests/empty-episode-v0", "CartPole-v1", [episode])
    (path,) = glob.glob(os.path.join(minari_root, "tests", "empty-episode-v0", "**", "*.hdf5"), recursive=True)
    with h5py.File(path, "r+") as f:
        group = f["episode_0"]
        for key in ("actions", "rewards", "terminations", "truncations"):
            dtype = group[key].dtype
            del group[key]
            group.create_dataset(key, shape=(0,), dtype=dtype, maxshape=(None,))
        first = group["observations"][:1]
        del group["observations"]
        group.create_dataset("observations", data=first, maxshape=(None, 4))
        group.attrs["total_steps"] = 0
    dataset = minari.load_dataset("tests/empty-episode-v0")
    assert [len(ep.actions) for ep in dataset.iterate_episodes()] == [0]
    with pytest.raises(DatasetValueError, match="'tests/empty-episode-v0' holds no episodes with at least one step"):
        RawEpisodes.read(dataset, "tests/empty-episode-v0")
    with pytest.raises(DatasetValueError, match="regenerate"):
        ControlTask("cartpole", gym.make("CartPole-v1"), dataset, 64, ARGS)


# --------------------------------------------------------------------------- bad values


def bad_dataset(data, dataset_id, env_id, episodes):
    return data.write(dataset_id, env_id, episodes, validate=False)


def test_nan_in_an_observation(data):
    episodes = data.rollout("MountainCarContinuous-v0", 3, 8)
    episodes[1]["observations"][3] = np.array([np.nan, 0.0], np.float32)
    dataset = bad_dataset(data, "tests/mcc-nan-v0", "MountainCarContinuous-v0", episodes)
    with pytest.raises(DatasetValueError) as info:
        task(dataset, "MountainCarContinuous-v0")
    msg = str(info.value)
    assert "'tests/mcc-nan-v0'" in msg and "episode 1" in msg and "obs holds NaN" in msg and "step 3" in msg
    assert "Fix or drop that episode" in msg


@pytest.mark.filterwarnings("ignore:env_spec is None")
def test_nan_in_a_dict_observation_field():
    from gato.data.episodes import EncodedEpisodes
    from gato.data.writer import write_dataset

    space = spaces.Dict(pos=spaces.Box(-2, 2, (2,), np.float32), vel=spaces.Box(-1, 1, (2,), np.float32))
    action_space = spaces.Box(-1, 1, (1,), np.float32)
    rng = np.random.default_rng(0)
    episodes = []
    for _ in range(2):
        obs = [{"pos": rng.uniform(-1, 1, 2).astype(np.float32), "vel": rng.uniform(-1, 1, 2).astype(np.float32)}
               for _ in range(6)]
        episodes.append(dict(observations=obs, actions=[np.array([0.5], np.float32)] * 5, rewards=[0.0] * 5,
                             terminations=[False] * 4 + [True], truncations=[False] * 5))
    episodes[1]["observations"][2]["vel"][1] = np.inf
    dataset = write_dataset("tests/dict-nan-v0", episodes, env_id=None, observation_space=space,
                            action_space=action_space, validate=False)
    raw = RawEpisodes.read(dataset, "tests/dict-nan-v0")
    with pytest.raises(DatasetValueError, match=r'episode 1: obs\["vel"\] holds NaN or inf at step 2'):
        EncodedEpisodes.encode(raw, SpaceCodec(space, action_space), "tests/dict-nan-v0")


def test_out_of_range_discrete_action(data):
    episodes = data.rollout("CartPole-v1", 3, 8)
    episodes[2]["actions"][1] = 2
    dataset = bad_dataset(data, "tests/cartpole-bad-action-v0", "CartPole-v1", episodes)
    with pytest.raises(DatasetValueError) as info:
        task(dataset, "CartPole-v1")
    msg = str(info.value)
    assert "episode 2" in msg and "action holds [2] at step 1" in msg and "outside Discrete(2)" in msg


def test_out_of_range_discrete_observation_field(babyai_dataset, data):
    episodes = []
    for ep in babyai_dataset.iterate_episodes():
        obs = {"direction": ep.observations["direction"].copy(), "image": ep.observations["image"],
               "mission": list(ep.observations["mission"])}
        episodes.append(dict(observations=obs, actions=ep.actions, rewards=ep.rewards,
                             terminations=ep.terminations, truncations=ep.truncations))
    episodes[3]["observations"]["direction"][2] = 7
    from gato.data.writer import write_dataset

    dataset = write_dataset("tests/babyai-bad-v0", episodes, env_id="BabyAI-GoToRedBall-v0",
                            observation_space=babyai_dataset.observation_space,
                            action_space=babyai_dataset.action_space, validate=False)
    problem = r'episode 3: obs\["direction"\] holds \[7\] at step 2, outside Discrete\(4\)'
    with pytest.raises(DatasetValueError, match=problem):
        ControlTask("babyai", gym.make("minigrid:BabyAI-GoToRedBall-v0"), dataset, 128, ARGS)


def test_out_of_bounds_box_action(data):
    episodes = data.rollout("Pendulum-v1", 2, 8)
    episodes[0]["actions"][4] = np.array([3.5], np.float32)
    dataset = bad_dataset(data, "tests/pendulum-bad-action-v0", "Pendulum-v1", episodes)
    with pytest.raises(DatasetValueError) as info:
        task(dataset, "Pendulum-v1")
    msg = str(info.value)
    assert "episode 0" in msg and "action holds [3.5] at step 4" in msg and "outside Box(-2.0, 2.0" in msg

    episodes[0]["actions"][4] = np.array([np.nan], np.float32)
    dataset = bad_dataset(data, "tests/pendulum-nan-action-v0", "Pendulum-v1", episodes)
    with pytest.raises(DatasetValueError, match="episode 0: action holds NaN or inf at step 4"):
        task(dataset, "Pendulum-v1")


def test_bad_value_names_the_episode_id_of_a_filtered_dataset(data):
    """A filtered MinariDataset (here: without episode 0) still reports the episode's own id."""
    episodes = data.rollout("CartPole-v1", 4, 6)
    episodes[2]["actions"][0] = 5
    dataset = bad_dataset(data, "tests/cartpole-filtered-v0", "CartPole-v1", episodes)
    subset = dataset.filter_episodes(lambda ep: ep.id != 0)
    assert [ep.id for ep in subset.iterate_episodes()] == [1, 2, 3]
    with pytest.raises(DatasetValueError, match=r"episode 2: action holds \[5\]"):
        task(subset, "CartPole-v1")

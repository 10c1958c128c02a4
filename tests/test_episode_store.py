"""The episode store (gato.data.episode_store): the same batches as episodes kept in memory, rebuilt
when the dataset or the codec changes, never half-used after a killed build, built once by processes that start
together, and never reading the dataset's file again once built."""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

from gato.data.episode_store import STORE_PATH_ENV, FileRows
from gato.data.episodes import DamagedDatasetError, DataStats, EncodedEpisodes, RawEpisodes, load_minari
from gato.tasks.control_task import ControlTask
from gato.vocab import Vocab

REPO = Path(__file__).resolve().parents[1]
VOCAB = dict(discrete_tokens=64, continuous_tokens=64)


@pytest.fixture(scope="module")
def babyai_source(tmp_path_factory):
    """A Minari root holding 6 BabyAI GoToRedBall bot episodes (Dict obs: image, direction, mission)."""
    from gato.data.babyai import generate_babyai

    root = tmp_path_factory.mktemp("store_source")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MINARI_DATASETS_PATH", str(root))
        report = generate_babyai("GoToRedBall", 6, workers=1, reference_episodes=0, progress=False)
    assert report.episodes_written == 6
    return root, report.dataset_id


@pytest.fixture
def babyai_id(babyai_source, minari_root):
    """The BabyAI dataset copied into this test's own Minari root (so its stores are this test's)."""
    root, dataset_id = babyai_source
    shutil.copytree(root, minari_root, dirs_exist_ok=True)
    return dataset_id


def task(dataset_id, store=None, **kwargs) -> ControlTask:
    return ControlTask("babyai", None, dataset_id, context_len=128, patch_size=4, vocab=Vocab(**VOCAB), store=store,
                       **kwargs)


def assert_same_batch(a, b) -> None:
    """Every array of two Batches byte-equal (dtype and shape included)."""
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        assert (x is None) == (y is None), f.name
        if x is not None:
            assert x.dtype == y.dtype and x.shape == y.shape and x.tobytes() == y.tobytes(), f.name


def batches(t: ControlTask, seed: int = 0, n: int = 4) -> list:
    rng = np.random.default_rng(seed)
    return [t.sample_batch(16, t.codec.vocab, rng=rng) for _ in range(n)]


def store_dirs(t: ControlTask) -> list[Path]:
    """The complete codec stores beside ``t``'s."""
    return complete(t.store.dir.parent)


def complete(stores: Path) -> list[Path]:
    """The codec stores under their real names (pathlib's * also matches the hidden temporary folders)."""
    return sorted(p.parent for p in stores.glob("*/*/meta.json") if not p.parent.name.startswith("."))


OPTIONS = [dict(),
           dict(pack_windows=True, action_history_noise=0.2),
           dict(prompt_ep_proportion=0.5, share_prompt_episodes=False, top_k_prompting=3, prompt_type="uniform"),
           dict(prompt_ep_proportion=1.0, prompt_type="end", pack_windows=True, task_id=2)]


@pytest.mark.parametrize("options", OPTIONS)
def test_store_gives_the_batches_of_the_in_memory_path(babyai_id, options):
    memory, stored = task(babyai_id, store=False, **options), task(babyai_id, **options)
    assert memory.store is None and stored.store is not None and stored.store.built
    assert isinstance(stored.episodes.steps, FileRows) and memory.episodes.steps.base is None
    assert stored.codec.layout() == memory.codec.layout()  # fitted from the saved statistics, as from the episodes
    for a, b in zip(batches(memory), batches(stored)):
        assert_same_batch(a, b)
    prompts = [t.eval_prompt(t.codec, np.random.default_rng(3), 128)(5) for t in (memory, stored)]
    for key in prompts[0]:
        assert prompts[0][key].equal(prompts[1][key]), key

    # DAgger's episodes (taken actions differing from the labels) join in memory, after the store
    raw = memory.raw
    added = RawEpisodes(raw.observations[:2], raw.actions[:2], raw.rewards[:2], ["a", "b"],
                        taken=[(a + 1) % 7 for a in raw.actions[:2]])
    for t in (memory, stored):
        t.add_episodes(added)
    assert not isinstance(stored.episodes.steps, np.ndarray)  # chained, the store not copied into memory
    assert len(stored.episodes.steps) == len(memory.episodes.steps)
    np.testing.assert_array_equal(np.asarray(stored.episodes.inputs), memory.episodes.inputs)
    for a, b in zip(batches(memory, 1, 8), batches(stored, 1, 8)):
        assert_same_batch(a, b)
    assert len(stored.raw) == len(memory.raw) == 8 and stored.raw.taken[6:] == memory.raw.taken[6:]


def test_episode_draw_is_rng_choice_with_length_weights():
    """The O(log E) draw gives exactly rng.choice's episodes (so seeds reproduce earlier runs' batches)."""
    lengths = np.random.default_rng(0).integers(1, 60, 5000)
    episodes = EncodedEpisodes(np.zeros((lengths.sum(), 1)), np.zeros((lengths.sum(), 0)),
                               np.concatenate([[0], np.cumsum(lengths)]), np.zeros(len(lengths)))
    a, b = np.random.default_rng(7), np.random.default_rng(7)
    chosen = [int(a.choice(len(lengths), p=lengths / lengths.sum())) for _ in range(3000)]
    drawn = [int(episodes.length_cdf.searchsorted(b.random(), side="right")) for _ in range(3000)]
    assert chosen == drawn and a.random() == b.random()


def test_changed_codec_or_dataset_makes_a_new_store(babyai_id, data):
    first = task(babyai_id)
    assert first.store.built and len(store_dirs(first)) == 1
    again = task(babyai_id)
    assert not again.store.built and again.store.path == first.store.path

    # another codec: another vocabulary, another task token, another field reading
    for kwargs in (dict(vocab=Vocab(discrete_tokens=32, continuous_tokens=64)), dict(task_id=1),
                   dict(field_overrides={"image": {"kind": "image", "low": 0, "high": 10}})):
        t = ControlTask("babyai", None, babyai_id, context_len=128, patch_size=4, **{"vocab": Vocab(**VOCAB), **kwargs})
        assert t.store.built and t.store.path != first.store.path, kwargs
        memory = ControlTask("babyai", None, babyai_id, context_len=128, patch_size=4, store=False,
                             **{"vocab": Vocab(**VOCAB), **kwargs})
        assert_same_batch(batches(t, n=1)[0], batches(memory, n=1)[0])
    assert len(store_dirs(first)) == 4

    # encode_for another vocabulary opens (or builds) that vocabulary's store
    codec = first.encode_for(Vocab(discrete_tokens=32, continuous_tokens=64))
    assert not first.store.built and codec.vocab.discrete_tokens == 32

    # another dataset under the same id: rewritten with other episodes
    episodes = data.rollout("CartPole-v1", 3, 20, seed=0)
    data.write("test/cart-v0", "CartPole-v1", episodes)
    cart = ControlTask("cart", None, "test/cart-v0", context_len=64, vocab=Vocab(**VOCAB))
    assert cart.store.built and len(cart.episodes.lengths) == 3
    import gymnasium as gym

    from gato.data.writer import write_dataset

    env = gym.make("CartPole-v1")
    write_dataset("test/cart-v0", data.rollout("CartPole-v1", 5, 20, seed=50), env_id="CartPole-v1",
                  observation_space=env.observation_space, action_space=env.action_space, overwrite=True)
    rewritten = ControlTask("cart", None, "test/cart-v0", context_len=64, vocab=Vocab(**VOCAB))
    assert rewritten.store.built and rewritten.store.dir != cart.store.dir and len(rewritten.episodes.lengths) == 5
    memory = ControlTask("cart", None, "test/cart-v0", context_len=64, vocab=Vocab(**VOCAB), store=False)
    assert_same_batch(batches(rewritten, n=1)[0], batches(memory, n=1)[0])


def test_a_vector_read_observation_is_stored_sampled_and_acted_on_as_in_memory(data, minari_root, tiny_policy):
    data.write("test/cart-v0", "CartPole-v1", data.rollout("CartPole-v1", 4, 20, seed=0))
    kwargs = dict(context_len=64, vocab=Vocab(**VOCAB), field_overrides={"": "vector"}, eval_envs=2)
    stored = ControlTask("cart", None, "test/cart-v0", **kwargs)
    memory = ControlTask("cart", None, "test/cart-v0", store=False, **kwargs)
    assert stored.store.built and stored.codec.tokens_per_step == 1 + 1 + 1  # obs, separator, action
    batch = batches(stored, n=1)[0]
    assert_same_batch(batch, batches(memory, n=1)[0])
    assert batch.patches.shape[1:] == (1, 4, 4) and batch.patch_mask.sum() == len(batch.patches)
    result = stored.evaluate(tiny_policy(context_len=64), 2)  # the agent encodes env observations the same way
    assert result["episodes"] == 2


def test_a_vector_field_is_scaled_by_each_values_range_in_the_data(data, minari_root):
    """CartPole's velocities are declared unbounded: each of the four values is scaled by the range it takes in
    the episodes, the same from the store and from memory, and a checkpoint's codec keeps those bounds."""
    from gato.codec import FieldSpec
    from gato.codec_io import codec_from_dict, codec_to_dict

    episodes = data.rollout("CartPole-v1", 4, 20, seed=0)
    data.write("test/cart-v0", "CartPole-v1", episodes)
    kwargs = dict(context_len=64, vocab=Vocab(**VOCAB), field_overrides={"": "vector"})
    stored = ControlTask("cart", None, "test/cart-v0", **kwargs)
    memory = ControlTask("cart", None, "test/cart-v0", store=False, **kwargs)
    seen = np.concatenate([e["observations"] for e in episodes]).astype(np.float64)
    for codec in (stored.codec, memory.codec, codec_from_dict(codec_to_dict(stored.codec))):
        spec = FieldSpec.parse(codec.overrides[""])
        np.testing.assert_allclose(spec.low, seen.min(0), rtol=1e-6)
        np.testing.assert_allclose(spec.high, seen.max(0), rtol=1e-6)
        assert "4 of 4 scaled by their range" in codec.layout()[0]["read as"]
        _, patches = codec.encode_observations(seen, len(seen))
        unit = codec.normalize_patches(patches).reshape(len(seen), -1)[:, :4]
        assert np.allclose(unit.min(0), -1, atol=1e-5) and np.allclose(unit.max(0), 1, atol=1e-5)


def test_codec_fitted_to_the_first_chunks_is_replaced_when_later_episodes_change_it(data, monkeypatch):
    """The first build fits its codec to the first chunks; later episodes with a longer mission and a new
    image value change the codec, and the store must then be the complete statistics' codec's."""
    import gymnasium as gym
    import minigrid  # noqa: F401 -- registers the BabyAI envs

    from gato.data import episode_store
    from gato.data.babyai import babyai_observation_space
    from gato.data.writer import write_dataset

    episodes = data.rollout("BabyAI-GoToRedBall-v0", 6, 8, seed=0)
    longer = "go to the red ball and then go to the red ball again"
    for episode in episodes[4:]:
        for obs in episode["observations"]:
            obs["mission"] = longer
            obs["image"] = obs["image"].copy()
            obs["image"][0, 0, 0] = 12
    env = gym.make("BabyAI-GoToRedBall-v0")
    write_dataset("test/later-v0", episodes, env_id="BabyAI-GoToRedBall-v0",
                  observation_space=babyai_observation_space(env.observation_space), action_space=env.action_space)
    monkeypatch.setattr(episode_store, "CHUNK_EPISODES", 2)
    monkeypatch.setattr(episode_store, "KEEP_STEPS", 1)  # the first chunk alone fits the first guess

    stored, memory = task("test/later-v0"), task("test/later-v0", store=False)
    first = RawEpisodes.read(load_minari("test/later-v0"), "x")
    guess = DataStats.of(RawEpisodes(first.observations[:2], first.actions[:2], first.rewards[:2], [0, 1]),
                         DataStats.leaves_of(env.observation_space))
    assert guess.top["image"] < 12 and longer not in guess.strings["mission"]  # the guess was another codec
    assert stored.store.built and stored.codec.layout() == memory.codec.layout()
    assert stored.stats.top["image"] == 12 and longer in stored.stats.strings["mission"]
    for a, b in zip(batches(memory), batches(stored)):
        assert_same_batch(a, b)
    assert len(complete(stored.store.dir.parent)) == 1


def test_second_start_reads_nothing_of_the_dataset_file(babyai_id, minari_root):
    first = task(babyai_id)
    meta = first.store.path / "meta.json"
    built_at = meta.stat().st_mtime_ns
    # replace the episodes' file by zeros of the same size and modification time: same identity, no data
    hdf5 = next((minari_root / babyai_id / "data").glob("*.hdf5"))
    stat = hdf5.stat()
    hdf5.write_bytes(bytes(stat.st_size))
    os.utime(hdf5, ns=(stat.st_atime_ns, stat.st_mtime_ns))
    with pytest.raises(DamagedDatasetError):  # anything that read it would fail
        RawEpisodes.read(load_minari(babyai_id, open_data=False), babyai_id)

    second = task(babyai_id)
    assert not second.store.built and second.store.path == first.store.path
    assert meta.stat().st_mtime_ns == built_at
    for a, b in zip(batches(first), batches(second)):
        assert_same_batch(a, b)


def test_store_location_follows_the_environment_variable(babyai_id, minari_root, tmp_path, monkeypatch):
    monkeypatch.setenv(STORE_PATH_ENV, str(tmp_path / "stores"))
    t = task(babyai_id)
    assert t.store.dir.is_relative_to(tmp_path / "stores" / babyai_id)
    assert not (minari_root / babyai_id / ".gato-store").exists()
    monkeypatch.setenv(STORE_PATH_ENV, "off")
    assert task(babyai_id).store is None
    # a location that cannot be written: a warning, and the episodes in memory
    (tmp_path / "a-file").write_text("")
    monkeypatch.setenv(STORE_PATH_ENV, str(tmp_path / "a-file"))
    with pytest.warns(UserWarning, match=STORE_PATH_ENV):
        fallback = task(babyai_id)
    assert fallback.store is None
    assert_same_batch(batches(fallback, n=1)[0], batches(t, n=1)[0])


def test_damaged_store_is_rebuilt(babyai_id):
    first = task(babyai_id)
    steps = first.store.path / "steps.npy"
    expected = batches(first)
    del first
    with open(steps, "r+b") as f:
        f.truncate(steps.stat().st_size // 2)
    again = task(babyai_id)
    assert again.store.built
    for a, b in zip(expected, batches(again)):
        assert_same_batch(a, b)


def _python(code: str, env: dict, **kwargs) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, cwd=REPO, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, **kwargs)


BUILD = """
    import hashlib, json, os, sys, time
    from pathlib import Path
    import numpy as np
    from gato.tasks.control_task import ControlTask
    from gato.vocab import Vocab
    barrier = Path(os.environ["BARRIER"]) if os.environ.get("BARRIER") else None
    if barrier is not None:  # both processes build from the same instant
        (barrier / str(os.getpid())).touch()
        while len(list(barrier.iterdir())) < 2:
            time.sleep(0.01)
    t = ControlTask("babyai", None, sys.argv[1], context_len=128, patch_size=4,
                    vocab=Vocab(discrete_tokens=64, continuous_tokens=64))
    b = t.sample_batch(16, t.codec.vocab, rng=np.random.default_rng(0))
    print(json.dumps({"built": t.store.built, "path": str(t.store.path),
                      "tokens": hashlib.sha256(b.tokens.tobytes() + b.patches.tobytes()).hexdigest()}))
"""

# the build of the KILL_AT-th directory swap dies at the instant before the complete folder is renamed into place
KILLED = """
    import os, signal, sys
    import gato.atomic as atomic
    real = atomic.replace_dir
    def replace_dir(new, target):
        if os.path.exists(os.path.join(new, "steps.npy")):
            os.kill(os.getpid(), signal.SIGKILL)
        real(new, target)
    atomic.replace_dir = replace_dir
""" + BUILD


def _env(minari_root, **extra) -> dict:
    return {**os.environ, "MINARI_DATASETS_PATH": str(minari_root), "OMP_NUM_THREADS": "1", **extra}


@pytest.mark.slow
def test_killed_build_leaves_no_store_and_the_next_start_builds_one(babyai_id, minari_root):
    killed = _python(KILLED.replace("sys.argv[1]", repr(babyai_id)), _env(minari_root))
    killed.communicate(timeout=120)
    assert killed.returncode == -9
    stores = minari_root / babyai_id / ".gato-store"
    assert not complete(stores)  # nothing under a real name
    assert list(stores.glob("*/.*writing-*/steps.npy"))  # the complete-looking folder it never renamed

    t = task(babyai_id)
    assert t.store.built and not list(t.store.dir.glob(".*writing-*"))  # built anew, the litter deleted
    memory = task(babyai_id, store=False)
    for a, b in zip(batches(memory), batches(t)):
        assert_same_batch(a, b)


@pytest.mark.slow
def test_two_processes_starting_together_build_one_store(babyai_id, minari_root, tmp_path):
    barrier = tmp_path / "barrier"
    barrier.mkdir()
    env = _env(minari_root, BARRIER=str(barrier))
    runs = [_python(BUILD.replace("sys.argv[1]", repr(babyai_id)), env) for _ in range(2)]
    results = []
    for run in runs:
        out, err = run.communicate(timeout=120)
        assert run.returncode == 0, err[-2000:]
        results.append(json.loads(out.strip().splitlines()[-1]))
    assert sorted(r["built"] for r in results) == [False, True]  # one built, the other waited and opened it
    assert results[0]["path"] == results[1]["path"] and results[0]["tokens"] == results[1]["tokens"]
    stores = minari_root / babyai_id / ".gato-store"
    assert len(complete(stores)) == 1 and not list(stores.glob("*/.*writing-*"))
    t = task(babyai_id)
    assert not t.store.built and str(t.store.path) == results[0]["path"]

"""Nothing half-written, and clear errors on damaged files: checkpoints swapped atomically (SIGKILLed writers),
eval.json written by rename, half-written datasets reported with the fix, random byte damage of a checkpoint's
and a dataset's files giving a clear error or a clean load, never a crash deep inside."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import textwrap
import time

import gymnasium as gym
import numpy as np
import pytest
import torch
from conftest import TINY

from gato import atomic
from gato.data.episodes import DamagedDatasetError, EncodedEpisodes, RawEpisodes, fit_codec, load_minari
from gato.errors import USER_ERRORS
from gato.policy.gato_policy import CheckpointError, GatoPolicy

CLEAR = (CheckpointError, DamagedDatasetError, *USER_ERRORS)

# ----------------------------------------------------------------------------- checkpoints under SIGKILL

WRITER = textwrap.dedent("""
    import sys, torch
    from gato.policy.gato_policy import GatoPolicy
    model = GatoPolicy(**{tiny})
    for version in range(1, 10 ** 6):
        with torch.no_grad():
            for p in model.parameters():
                p.fill_(float(version))
        model.save_pretrained(sys.argv[1], extra={{"version.json": version}})
        print(version, flush=True)
""")


def _version(directory) -> float:
    """The one value every weight of a checkpoint written by WRITER holds (its version)."""
    model = GatoPolicy.from_pretrained(directory)
    values = torch.cat([p.detach().flatten() for p in model.parameters()]).unique()
    assert len(values) == 1, f"weights of several versions mixed: {values[:5]}"
    return float(values[0])


@pytest.mark.slow
def test_checkpoint_survives_sigkill_at_random_moments(tmp_path):
    directory = tmp_path / "run" / "checkpoint"
    script = tmp_path / "writer.py"
    script.write_text(WRITER.format(tiny=TINY))
    rng = np.random.default_rng(0)
    seen = set()
    for _ in range(4):
        child = subprocess.Popen([sys.executable, str(script), str(directory)], stdout=subprocess.PIPE, text=True,
                                 cwd=os.getcwd())
        first = int(child.stdout.readline())  # one whole checkpoint of this writer exists
        time.sleep(float(rng.uniform(0.0, 0.4)))
        child.send_signal(signal.SIGKILL)
        child.wait()
        version = _version(directory)  # loads under the name, weights all of one version
        assert version >= first
        assert (directory / "version.json").read_text().strip() == str(int(version))  # extras of the same one
        seen.add(version)
        assert not atomic.previous_path(directory).exists()
    assert len(seen) > 1 or max(seen) > 1  # the writer really wrote over its checkpoints


def test_save_over_a_checkpoint_replaces_it_whole(tmp_path, tiny_policy):
    directory = tmp_path / "checkpoint"
    tiny_policy(seed=0).save_pretrained(directory, extra={"a.json": 1, "b.json": 2})
    new = tiny_policy(seed=1)
    new.save_pretrained(directory, extra={"a.json": 3})
    assert sorted(p.name for p in directory.iterdir()) == ["README.md", "a.json", "config.json", "model.safetensors"]
    loaded = GatoPolicy.from_pretrained(directory)
    for a, b in zip(loaded.state_dict().values(), new.state_dict().values()):
        assert torch.equal(a, b)
    assert [p.name for p in tmp_path.iterdir()] == ["checkpoint"]  # no temporary directory left behind


def test_swap_without_atomic_exchange_is_recovered(tmp_path, tiny_policy, monkeypatch):
    """Where renameat2's exchange is missing, a kill between the two renames leaves the previous checkpoint
    beside the name: from_pretrained loads it, and the next save puts it back before swapping."""
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    directory = tmp_path / "checkpoint"
    old = tiny_policy(seed=0)
    old.save_pretrained(directory)
    os.rename(directory, atomic.previous_path(directory))  # the state a kill between the renames leaves
    loaded = GatoPolicy.from_pretrained(directory)
    assert torch.equal(loaded.embedding.tokens.weight, old.embedding.tokens.weight)
    new = tiny_policy(seed=1)
    new.save_pretrained(directory)
    assert directory.is_dir() and not atomic.previous_path(directory).exists()
    assert torch.equal(GatoPolicy.from_pretrained(directory).embedding.tokens.weight, new.embedding.tokens.weight)


def test_replacing_keeps_the_old_file_when_writing_fails(tmp_path):
    out = tmp_path / "eval.json"
    atomic.write_json(out, {"v": 1})
    with pytest.raises(RuntimeError):
        with atomic.replacing(out) as tmp:
            tmp.write_text('{"v": ')  # half-written, then the writer dies
            raise RuntimeError("killed")
    assert out.read_text() == '{\n  "v": 1\n}'
    assert [p.name for p in tmp_path.iterdir()] == ["eval.json"]
    atomic.write_json(out, {"v": 2})
    assert '"v": 2' in out.read_text() and oct(out.stat().st_mode & 0o777) == oct(0o666 & ~_umask())


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


# ----------------------------------------------------------------------------- half-written datasets

DAMAGE = {
    "metadata.json missing": lambda d: (d / "data" / "metadata.json").unlink(),
    "metadata.json empty": lambda d: (d / "data" / "metadata.json").write_bytes(b""),
    "metadata.json truncated": lambda d: _truncate(d / "data" / "metadata.json", 0.5),
    "main_data.hdf5 missing": lambda d: (d / "data" / "main_data.hdf5").unlink(),
    "main_data.hdf5 truncated": lambda d: _truncate(d / "data" / "main_data.hdf5", 0.5),
    "main_data.hdf5 not hdf5": lambda d: (d / "data" / "main_data.hdf5").write_bytes(b"not an hdf5 file"),
    "data folder missing": lambda d: shutil.rmtree(d / "data"),
}


def _truncate(path, fraction: float) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])


@pytest.fixture
def cartpole_copy(cartpole_dataset, minari_root):
    """A fresh copy of the session's CartPole dataset under this test's root, as ``tests/cartpole-v0``."""
    target = minari_root / "tests" / "cartpole-v0"
    shutil.copytree(os.path.dirname(cartpole_dataset.storage.data_path), target)
    return target


@pytest.mark.parametrize("damage", list(DAMAGE))
def test_half_written_dataset_is_reported_with_the_fix(damage, cartpole_copy):
    DAMAGE[damage](cartpole_copy)
    with pytest.raises(DamagedDatasetError) as info:
        RawEpisodes.read(load_minari("tests/cartpole-v0"), "tests/cartpole-v0")
    msg = str(info.value)
    assert "'tests/cartpole-v0'" in msg and f"Delete the folder {cartpole_copy}" in msg
    assert "gato data" in msg and "--dataset_id tests/cartpole-v0 --overwrite" in msg
    assert isinstance(info.value, ValueError)


def test_damaged_dataset_fix_names_the_recipe_command(minari_root, cartpole_copy):
    target = minari_root / "babyai" / "GoToLocal-bot-v0"
    shutil.copytree(cartpole_copy, target)
    (target / "data" / "metadata.json").write_bytes(b'{"total_ep')
    with pytest.raises(DamagedDatasetError, match=r"`gato data babyai --level GoToLocal --overwrite`"):
        load_minari("babyai/GoToLocal-bot-v0")


def test_gato_inspect_reports_a_damaged_dataset_in_one_line(cartpole_copy, capsys):
    from gato.cli import main

    _truncate(cartpole_copy / "data" / "main_data.hdf5", 0.3)
    assert main(["inspect", "tests/cartpole-v0"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "damaged or half-written" in err and "Traceback" not in err


def test_overwrite_remakes_a_damaged_dataset(cartpole_copy, data, minari_root):
    (cartpole_copy / "data" / "metadata.json").unlink()
    from gato.data.writer import write_dataset

    env = gym.make("CartPole-v1")
    write_dataset("tests/cartpole-v0", data.rollout("CartPole-v1", 2, 5), env_id="CartPole-v1",
                  observation_space=env.observation_space, action_space=env.action_space, overwrite=True)
    assert load_minari("tests/cartpole-v0").total_episodes == 2
    left = [p.name for p in (*minari_root.iterdir(), *cartpole_copy.parent.iterdir()) if p.name.startswith(".")]
    assert left == []  # no staging folder, no previous dataset left beside it


# ----------------------------------------------------------------------------- random byte damage


def _damaged_copies(data: bytes, rng, n: int):
    """n damaged versions of ``data``: truncations and flips of 1 to 3 random bytes."""
    for i in range(n):
        if i % 4 == 0:
            yield data[: int(rng.integers(0, len(data)))]
        else:
            out = bytearray(data)
            for _ in range(int(rng.integers(1, 4))):
                k = int(rng.integers(0, len(out)))
                out[k] ^= int(rng.integers(1, 256))
            yield bytes(out)


@pytest.mark.parametrize("name", ["config.json", "model.safetensors"])
def test_random_damage_to_a_checkpoint_gives_a_clear_error_or_a_clean_load(name, tmp_path, tiny_policy):
    pristine = tmp_path / "pristine"
    tiny_policy().save_pretrained(pristine)
    original = (pristine / name).read_bytes()
    rng = np.random.default_rng(1 if name == "config.json" else 2)
    outcomes = set()
    for i, damaged in enumerate(_damaged_copies(original, rng, 40)):
        directory = tmp_path / f"c{i}"
        shutil.copytree(pristine, directory)
        (directory / name).write_bytes(damaged)
        try:
            GatoPolicy.from_pretrained(directory)
            outcomes.add("loaded")
        except CLEAR as e:
            outcomes.add("clear error")
            assert str(directory) in str(e)  # says which checkpoint
        shutil.rmtree(directory)
    assert "clear error" in outcomes


@pytest.mark.parametrize("name", ["metadata.json", "main_data.hdf5"])
def test_random_damage_to_a_dataset_gives_a_clear_error_or_a_clean_load(name, cartpole_dataset, cartpole_copy):
    pristine = cartpole_copy.parent / ".pristine"
    shutil.copytree(cartpole_copy, pristine)
    rng = np.random.default_rng(3 if name == "metadata.json" else 4)
    outcomes = set()
    for damaged in _damaged_copies((pristine / "data" / name).read_bytes(), rng, 40):
        shutil.rmtree(cartpole_copy)
        shutil.copytree(pristine, cartpole_copy)
        (cartpole_copy / "data" / name).write_bytes(damaged)
        try:  # what ControlTask and gato inspect do with a dataset
            dataset = load_minari("tests/cartpole-v0")
            raw = RawEpisodes.read(dataset, "tests/cartpole-v0")
            codec = fit_codec(raw, dataset.observation_space, dataset.action_space)
            EncodedEpisodes.encode(raw, codec, "tests/cartpole-v0")
            outcomes.add("loaded")
        except CLEAR:
            outcomes.add("clear error")
    assert "clear error" in outcomes

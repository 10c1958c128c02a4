"""RawEpisodes saved without pickle: nested Dict/Tuple observations, strings, taken actions, round-trip exactly."""

from __future__ import annotations

import numpy as np

from gato.data.episode_file import load_episodes, save_episodes
from gato.data.episodes import RawEpisodes


def test_nested_observations_strings_and_taken_actions_round_trip(tmp_path):
    rng = np.random.default_rng(0)
    observations = [{"image": rng.integers(0, 11, (4, 7, 7, 3), dtype=np.uint8), "direction": np.arange(4),
                     "mission": ["go to the red ball"] * 4,
                     "pair": (rng.normal(size=(4, 2)).astype(np.float32), np.array([True, False, True, True]))}
                    for _ in range(2)]
    raw = RawEpisodes(observations=observations, actions=[np.array([0, 1, 2]), np.array([2, 2, 1])],
                      rewards=[np.zeros(3), np.array([0.0, 0.0, 0.9])], ids=["correction-0", "correction-1"],
                      taken=[None, np.array([1, 2, 1])])
    save_episodes(raw, tmp_path / "episodes.safetensors")
    back = load_episodes(tmp_path / "episodes.safetensors")
    assert back.ids == raw.ids and len(back) == 2
    for a, b in zip(raw.observations, back.observations):
        assert a["mission"] == b["mission"]
        assert np.array_equal(a["image"], b["image"]) and b["image"].dtype == np.uint8
        assert np.array_equal(a["direction"], b["direction"])
        assert isinstance(b["pair"], tuple) and np.array_equal(a["pair"][0], b["pair"][0])
        assert b["pair"][1].dtype == bool
    assert all(np.array_equal(x, y) for x, y in zip(raw.actions + raw.rewards, back.actions + back.rewards))
    assert back.taken[0] is None and np.array_equal(back.taken[1], raw.taken[1])

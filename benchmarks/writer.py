"""Writing a Minari dataset: seconds against the number of episodes, Minari's own HDF5 file against ours.

What is measured
    Episodes shaped like BabyAI GoToLocal's (a Dict of direction, a 7x7x3 grid and the mission; 5 steps; random
    values, so that writing, not playing, is timed) written two ways, one size after the other:

    * ``minari``: ``minari.create_dataset_from_buffers`` with the first ``--chunk`` episodes, then
      ``storage.update_episodes`` with each further chunk: the file as Minari makes it. Minari counts the
      root group's links once per episode written, which in that file walks every episode written so far.
    * ``gato``: ``gato.data.writer.write_dataset`` (what ``gato data`` calls), whose file's root group
      stores its number of links.

    For each: seconds per chunk as the dataset grows, and the total. Written in a temporary folder.

    python benchmarks/writer.py                         # 80,000 episodes each way, chunks of 10,000 (~8 min)
    python benchmarks/writer.py --episodes 20000 --chunk 5000

Progress goes to stderr; a single JSON object is printed on stdout at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time

import _common as C

STEPS = 5
"""Steps per episode (GoToLocal's bot episodes average about 5)."""


def spaces():
    import gymnasium as gym
    import numpy as np

    observation = gym.spaces.Dict(direction=gym.spaces.Discrete(4),
                                  image=gym.spaces.Box(0, 255, (7, 7, 3), np.uint8),
                                  mission=gym.spaces.Text(200, charset="abcdefghijklmnopqrstuvwxyz ,"))
    return observation, gym.spaces.Discrete(7)


def episode(rng) -> dict:
    """One GoToLocal-shaped episode, as ``write_dataset`` takes it (stacked observations)."""
    import numpy as np

    return {"observations": {"direction": rng.integers(0, 4, STEPS + 1),
                             "image": rng.integers(0, 11, (STEPS + 1, 7, 7, 3), dtype=np.uint8),
                             "mission": ["go to the red ball"] * (STEPS + 1)},
            "actions": rng.integers(0, 7, STEPS), "rewards": np.zeros(STEPS),
            "terminations": np.arange(STEPS) == STEPS - 1, "truncations": np.zeros(STEPS, bool)}


def with_minari(n: int, chunk: int, seed: int) -> list[float]:
    """Seconds per chunk through Minari's own calls."""
    import minari
    import numpy as np
    from minari.data_collector.episode_buffer import EpisodeBuffer

    rng = np.random.default_rng(seed)
    observation_space, action_space = spaces()

    def buffers(count: int) -> list:
        return [EpisodeBuffer(observations=e["observations"], actions=e["actions"], rewards=e["rewards"].tolist(),
                              terminations=e["terminations"].tolist(), truncations=e["truncations"].tolist())
                for e in (episode(rng) for _ in range(count))]

    seconds, t0 = [], time.perf_counter()
    dataset = minari.create_dataset_from_buffers("bench/minari-v0", buffers(min(chunk, n)),
                                                 observation_space=observation_space, action_space=action_space)
    seconds.append(time.perf_counter() - t0)
    for start in range(chunk, n, chunk):
        t0 = time.perf_counter()
        dataset.storage.update_episodes(buffers(min(chunk, n - start)))
        seconds.append(time.perf_counter() - t0)
        C.log(f"minari: {start + chunk} episodes, the last {chunk} in {seconds[-1]:.1f} s")
    return seconds


def with_gato(n: int, chunk: int, seed: int) -> list[float]:
    """Seconds per chunk through ``write_dataset`` (timed as its episodes are asked for)."""
    import numpy as np

    from gato.data.writer import write_dataset

    rng = np.random.default_rng(seed)
    observation_space, action_space = spaces()
    marks = [time.perf_counter()]

    def episodes():
        for i in range(n):
            if i and i % chunk == 0:
                marks.append(time.perf_counter())
                C.log(f"gato: {i} episodes, the last {chunk} in {marks[-1] - marks[-2]:.1f} s")
            yield episode(rng)

    write_dataset("bench/gato-v0", episodes(), env_id=None, observation_space=observation_space,
                  action_space=action_space, validate=False)
    marks.append(time.perf_counter())
    return [b - a for a, b in zip(marks, marks[1:])]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--episodes", type=int, default=80_000, help="episodes written each way")
    parser.add_argument("--chunk", type=int, default=10_000, help="episodes per timed chunk")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="gato-writer-bench-")
    os.environ["MINARI_DATASETS_PATH"] = root
    rows = {}
    try:
        with C.stdout_to_stderr():
            for name, write in (("minari", with_minari), ("gato", with_gato)):
                per_chunk = write(args.episodes, args.chunk, args.seed)
                rows[name] = {"seconds_per_chunk": [round(s, 2) for s in per_chunk],
                              "total_seconds": round(sum(per_chunk), 1),
                              "last_chunk_over_first": round(per_chunk[-1] / per_chunk[0], 2)}
    finally:
        shutil.rmtree(root, ignore_errors=True)
    C.emit({"benchmark": "writer", "machine": C.machine_info("cpu"), "episodes": args.episodes,
            "chunk": args.chunk, "steps_per_episode": STEPS, "results": rows,
            "speedup": round(rows["minari"]["total_seconds"] / rows["gato"]["total_seconds"], 2)})


if __name__ == "__main__":
    main()

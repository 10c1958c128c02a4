"""Why Meta-World episodes run their full 500 steps: when the scripted policies succeed, and what
a return would measure if episodes ended at success.

For every task, ``--episodes`` clean scripted-policy episodes (seeds 1,999,990,000 + i: the end of the reference
block, which no dataset reaches) record the step of first success, the return up to it and the full 500-step
return; as many uniform-random episodes record their 500-step return. Ending episodes at success
makes the normalised score meaningless wherever the random return over 500 steps exceeds the
expert's return up to success.

    python benchmarks/metaworld_horizon.py --tasks mt50 --episodes 3

Prints a table on stderr and one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import multiprocessing
import sys
import warnings
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
import _common as C  # noqa: E402

# This file's folder must not shadow the metaworld package (see benchmarks/metaworld.py).
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

FIRST_SEED = 1_999_990_000  # inside gato.seeds.REFERENCE, far above any dataset's reference seeds


def measure(job: tuple[str, int]) -> dict:
    """One task's expert and random episodes."""
    import gymnasium as gym
    import numpy as np

    import gato.envs  # noqa: F401  (registers the env id)
    from gato.data.experts.metaworld import ENV_ID, MetaWorldExpert

    warnings.filterwarnings("ignore")
    task, episodes = job
    env = gym.make(ENV_ID, task=task)
    expert = MetaWorldExpert(env)
    first, until, full, random = [], [], [], []
    for i in range(episodes):
        obs, _ = env.reset(seed=FIRST_SEED + i)
        total, at, before = 0.0, None, None
        for step in range(1, 501):
            obs, reward, terminated, truncated, info = env.step(expert(obs))
            total += float(reward)
            if info["success"] and at is None:
                at, before = step, total
            if terminated or truncated:
                break
        first.append(at)
        until.append(before)
        full.append(total)
        env.reset(seed=FIRST_SEED + i)
        env.action_space.seed(FIRST_SEED + i)
        random.append(sum(float(env.step(env.action_space.sample())[1]) for _ in range(500)))
    env.close()
    reached = [s for s in first if s is not None]
    return {"task": task, "expert_success": len(reached) / episodes, "first_success_steps": first,
            "expert_return_until_success": float(np.mean([u for u in until if u is not None])) if reached else None,
            "expert_return_500": float(np.mean(full)), "random_return_500": float(np.mean(random))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", nargs="+", default=["mt50"], help="mt10, mt50 or task names")
    parser.add_argument("--episodes", type=int, default=3, help="expert and random episodes per task")
    parser.add_argument("--workers", type=int, default=2, help="processes")
    args = parser.parse_args()

    from gato.data.experts.metaworld import resolve_tasks
    from gato.table import format_table

    tasks = resolve_tasks(args.tasks)
    with multiprocessing.get_context("spawn").Pool(args.workers) as pool:
        rows = pool.map(measure, [(t, args.episodes) for t in tasks])
    worse = [r["task"] for r in rows if r["expert_return_until_success"] is not None
             and r["random_return_500"] > r["expert_return_until_success"]]
    steps = [s for r in rows for s in r["first_success_steps"] if s is not None]
    C.log(format_table([{"task": r["task"], "success": r["expert_success"],
                         "first success": " ".join(str(s) for s in r["first_success_steps"]),
                         "expert until success": _round(r["expert_return_until_success"]),
                         "expert 500": _round(r["expert_return_500"]),
                         "random 500": _round(r["random_return_500"])} for r in rows]))
    C.log(f"random 500-step return above the expert's return until success: {len(worse)} of {len(rows)} tasks")
    C.emit({"tasks": rows, "random_500_above_expert_until_success": worse,
            "first_success_step": {"median": sorted(steps)[len(steps) // 2] if steps else None,
                                   "max": max(steps, default=None)},
            "command": " ".join(sys.argv), "machine": C.machine_info("cpu")})


def _round(value):
    return "" if value is None else round(value)


if __name__ == "__main__":
    main()

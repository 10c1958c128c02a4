"""Where a Meta-World model's actions leave the scripted policy's, task by task.

A success rate says that a task fails, not how. This script lets a trained checkpoint act in each of its
Meta-World tasks (argmax actions, seeds 1,000,000+, goals no dataset showed) and asks Meta-World's scripted
policy, at every state the model visits, what it would have done. Per task it reports the mean
``|model action - scripted action|`` of each action dimension (x, y, z, gripper) over the episode and over its
first 50 steps (the reach towards the object), the closest the hand comes to the object and where it ends, how
far the object is lifted, how far from the goal the object and the hand end, and the success rate. Meta-World's
observation holds the hand's position at 0:3, the first object's at 4:7 and the goal at 36:39 (reach-v3's goal is
the hand's).

    python benchmarks/metaworld_actions.py runs/mw/metaworld-10tasks/checkpoint
    python benchmarks/metaworld_actions.py CHECKPOINT --tasks pick-place-v3 push-v3 --episodes 5 --json out.json

The checkpoint holds its tasks' codecs, so no dataset is needed. A table goes to stderr, the JSON to stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE))
import _common as C  # noqa: E402

# this folder holds metaworld.py: on sys.path, `import metaworld` would import that script, not Meta-World
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]

DIMS = ("x", "y", "z", "gripper")
REACH_STEPS = 50


def follow(agent, env, expert, seed: int) -> dict:
    """One episode acted by ``agent`` (``play_episode``), and the (stateless) scripted policy's action for every
    state it visited."""
    import numpy as np

    from gato.envs import play_episode

    agent.reset()
    episode = play_episode(env, agent.act, seed, record=True)
    obs = np.asarray(episode.observations)  # the T states acted in, then the last
    gaps = np.abs(np.asarray(episode.actions) - np.stack([expert(o) for o in obs[:-1]]))
    hand_to_object = np.linalg.norm(obs[:-1, 0:3] - obs[:-1, 4:7], axis=1)
    last = obs[-1]
    return {"gap": gaps.mean(0), "gap_reach": gaps[:REACH_STEPS].mean(0), "closest": float(hand_to_object.min()),
            "final": float(hand_to_object[-1]), "lift": float(obs[:, 6].max() - obs[0, 6]),
            "object_to_goal": float(np.linalg.norm(last[4:7] - last[36:39])),
            "hand_to_goal": float(np.linalg.norm(last[0:3] - last[36:39])), "success": bool(episode.success)}


def summarize(episodes: list[dict]) -> dict:
    """A task's row: the means of its episodes' measures."""
    import numpy as np

    def mean(key):
        return np.round(np.mean([e[key] for e in episodes], axis=0, dtype=np.float64), 3)

    return {
        "episodes": len(episodes),
        "success_rate": float(mean("success")),
        "action_gap": dict(zip(DIMS, mean("gap").tolist())),
        f"action_gap_first_{REACH_STEPS}_steps": dict(zip(DIMS, mean("gap_reach").tolist())),
        "closest_hand_to_object_m": float(mean("closest")),
        "final_hand_to_object_m": float(mean("final")),
        "object_lift_m": float(mean("lift")),
        "final_object_to_goal_m": float(mean("object_to_goal")),
        "final_hand_to_goal_m": float(mean("hand_to_goal")),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a `gato train` checkpoint folder trained on Meta-World tasks")
    parser.add_argument("--tasks", nargs="+", default=None, help="Meta-World task names (default: all it knows)")
    parser.add_argument("--episodes", type=int, default=3, help="episodes per task")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    parser.add_argument("--json", default=None, help="also write the JSON here (atomically)")
    args = parser.parse_args()
    if args.episodes < 1:
        parser.error("--episodes must be at least 1")
    C.set_threads(args.threads)

    from gato.agent import Agent
    from gato.atomic import write_json
    from gato.data.experts.metaworld import ENV_ID, MetaWorldExpert
    from gato.policy.gato_policy import CheckpointError, GatoPolicy
    from gato.tasks.registry import load_tasks

    try:
        policy = GatoPolicy.from_pretrained(args.checkpoint)
    except CheckpointError as e:
        raise SystemExit(str(e)) from None
    tasks = {}  # Meta-World task name: (task, env)
    for task in load_tasks(args.checkpoint, policy.vocab):
        env = task.make_env() if hasattr(task, "make_env") else None
        if env is not None and env.spec.id == ENV_ID:
            tasks[env.spec.kwargs["task"]] = (task, env)
        elif env is not None:
            env.close()
    if not tasks:
        raise SystemExit(f"{args.checkpoint} holds no Meta-World task")
    unknown = sorted(set(args.tasks or []) - set(tasks))
    if unknown:
        raise SystemExit(f"not tasks of this checkpoint: {' '.join(unknown)}; its tasks: {' '.join(sorted(tasks))}")
    rows = {}
    for name in args.tasks or sorted(tasks):
        task, env = tasks[name]
        agent, expert = Agent(policy, task), MetaWorldExpert(env)
        episodes = [follow(agent, env, expert, 1_000_000 + i) for i in range(args.episodes)]
        rows[name] = r = summarize(episodes)
        C.log(f"{name:26s} success {r['success_rate']:.2f}  |a - scripted| "
              + " ".join(f"{d} {v:.2f}" for d, v in r["action_gap"].items())
              + f"  hand-object closest {r['closest_hand_to_object_m']:.3f} m, last {r['final_hand_to_object_m']:.3f}"
                f" m  lift {r['object_lift_m']:.3f} m  object-goal last {r['final_object_to_goal_m']:.3f} m"
                f"  hand-goal last {r['final_hand_to_goal_m']:.3f} m")
    result = {"benchmark": "metaworld-actions", "machine": C.machine_info("cpu"), "checkpoint": args.checkpoint,
              "tasks": rows}
    if args.json:
        write_json(Path(args.json), result)
    C.emit(result)


if __name__ == "__main__":
    main()

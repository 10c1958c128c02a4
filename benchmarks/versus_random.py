"""Is a checkpoint's task better than chance? Argmax, sampled and uniform-random returns on the
same evaluation seeds (1,000,000+), with the difference in standard errors.

    python benchmarks/versus_random.py runs/NAME/checkpoint --task breakout/scripted --episodes 200

A dataset's reference random return comes from a few episodes of other seeds; a task scored near
chance (Breakout in the multi-task run) needs the comparison on the same seeds, and many of them.
Prints one JSON object on stdout.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="checkpoint directory written by `gato train`")
    parser.add_argument("--task", required=True, help="task name as `gato eval` prints it, e.g. breakout/scripted")
    parser.add_argument("--episodes", type=int, default=200)
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    args = parser.parse_args()
    C.set_threads(args.threads)

    from gato.evaluation.baselines import random_returns
    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import load_tasks

    checkpoint = Path(args.checkpoint)
    with C.stdout_to_stderr():
        policy = GatoPolicy.from_pretrained(checkpoint)
        task = load_tasks(checkpoint, policy.vocab, names=[args.task])[0]
        C.log(f"random policy, {args.episodes} episodes")
        chance = random_returns(task.make_env, args.episodes)
        result = {"checkpoint": str(checkpoint), "task": args.task, "episodes": args.episodes,
                  "random": _stats(chance)}
        for mode, deterministic in (("argmax", True), ("sampled", False)):
            m = task.evaluate(policy, args.episodes, deterministic=deterministic, promptless_eval=True, progress=True)
            # evaluate reports mean and std only; the standard error of the difference needs both
            sem = np.hypot(m["std_return"] / np.sqrt(args.episodes - 1), result["random"]["sem"])
            result[mode] = {"mean": m["mean_return"], "std": m["std_return"], "share_scoring": m["success_rate"],
                            "minus_random_in_standard_errors": (m["mean_return"] - chance.mean()) / sem}
            C.log(f"{mode}: {m['mean_return']:.2f} +- {m['std_return']:.2f}, random {chance.mean():.2f}")
    result["machine"] = C.machine_info("cpu")
    C.emit(result)


def _stats(returns: np.ndarray) -> dict:
    return {"mean": float(returns.mean()), "std": float(returns.std()),
            "sem": float(returns.std(ddof=1) / np.sqrt(len(returns))),
            "share_scoring": float((returns > 0).mean())}


if __name__ == "__main__":
    main()

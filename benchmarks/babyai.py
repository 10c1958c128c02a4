"""BabyAI success rate against training minutes, for the default model on a CPU.

The default policy (TrainingArgs defaults: 4 layers, 128 wide) is trained from BabyAI bot data
for a fixed wall-clock budget with the real Trainer, evaluated every ``--eval_every`` minutes of
training on 100 episodes, and at the end on ``--final_episodes`` episodes (default 200), with
argmax actions ("final", what the target is judged on) and with sampled actions ("final_stochastic"). All
evaluation seeds start at 1,000,000; the bot data uses seeds from 0, so no level is seen twice.
Evaluation time is not counted as training time.

    python benchmarks/babyai.py --level GoToLocal --minutes 20        # target: success >= 0.95
    python benchmarks/babyai.py --level GoToRedBall --minutes 10      # target: success >= 0.98

Prints one JSON object (curve, final metrics, machine) and writes a PNG of the curve.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402

TARGETS = {"GoToLocal": (20.0, 0.95), "GoToRedBall": (10.0, 0.98)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--level", default="GoToLocal", help="BabyAI level")
    parser.add_argument("--minutes", type=float, default=None, help="training budget (default: the level's target)")
    parser.add_argument("--eval_every", type=float, default=2.5, help="minutes of training between evaluations")
    parser.add_argument("--eval_episodes", type=int, default=100, help="episodes per intermediate evaluation")
    parser.add_argument("--final_episodes", type=int, default=200, help="episodes of the final evaluation")
    parser.add_argument("--episodes", type=int, default=None,
                        help="bot episodes in the dataset (default: TrainingArgs)")
    parser.add_argument("--data_dir", default=None, help="Minari folder to use/keep (default: a temporary one)")
    parser.add_argument("--out", default="runs/benchmarks", help="folder for the PNG and the run's outputs")
    parser.add_argument("--dagger_rounds", type=int, default=0,
                        help="DAgger rounds within the budget: the bot labels the policy's own rollouts (time counted)")
    parser.add_argument("--dagger_episodes", type=int, default=2000, help="policy episodes labelled per DAgger round")
    parser.add_argument("--threads", type=int, default=0, help="torch threads (0: torch's default)")
    parser.add_argument("--constant_text", choices=["window", "step"], default="window",
                        help="the mission once per window (default) or in every timestep")
    parser.add_argument("--steps", type=int, default=0,
                        help="also stop at this many optimizer steps (two runs side by side on a busy machine then "
                             "compare at equal steps; give a large --minutes)")
    parser.add_argument("--seed", type=int, default=0, help="training seed (a repeat on another seed)")
    parser.add_argument("--quick", action="store_true", help="1 minute, small evaluations: checks the script works")
    args = parser.parse_args()

    from gato.training.arguments import TrainingArgs

    minutes = args.minutes or TARGETS.get(args.level, (20.0, None))[0]
    if args.quick:
        minutes, args.eval_every, args.eval_episodes, args.final_episodes = 1.0, 0.5, 16, 32
    folder, created = C.use_data_dir(args.data_dir)
    C.set_threads(args.threads)
    dataset_id = f"babyai/{args.level}-bot-v0"
    try:
        train_args = TrainingArgs(
            control_datasets=[dataset_id], max_minutes=minutes, eval_every_minutes=args.eval_every,
            eval_episodes=args.eval_episodes, save_dir=args.out, exp_name=f"babyai-{args.level}",
            save_model=False, dagger_rounds=args.dagger_rounds, dagger_episodes=args.dagger_episodes,
            constant_text=args.constant_text, seed=args.seed, **({"training_steps": args.steps} if args.steps else {}),
            **({"data_episodes": args.episodes} if args.episodes else {}),
        )
        result = run(train_args, args.final_episodes)
    finally:
        C.cleanup(folder, created)
    target = TARGETS.get(args.level)
    met = target is not None and result["final"]["success_rate"] >= target[1] and minutes <= target[0]
    result["target"] = {"minutes": target[0], "success_rate": target[1], "met": met} if target else None
    result["machine"] = C.machine_info("cpu")
    C.emit(result)


def run(train_args, final_episodes: int) -> dict:
    from gato.evaluation.plots import plot_learning_curve
    from gato.training.run import build_trainer

    with C.stdout_to_stderr():
        trainer = build_trainer(train_args)
        trainer.train()
        task = trainer.tasks[0]
        final = task.evaluate(trainer.policy, final_episodes, n_envs=train_args.eval_envs, promptless_eval=True)
        final_stochastic = task.evaluate(trainer.policy, final_episodes, n_envs=train_args.eval_envs,
                                         promptless_eval=True, deterministic=False)
    curve = [{"minutes": round(h["minutes"], 2), "step": h["step"], **h["eval"][task.name]}
             for h in trainer.history if "eval" in h]
    trainer.history.append({"step": trainer.step, "minutes": trainer.train_seconds / 60, "eval": {task.name: final}})
    png = plot_learning_curve(trainer.history, trainer.run_dir / "babyai_curve.png",
                              title=f"{task.name}: success vs CPU training minutes", metric="success_rate")
    return {
        "level": task.name, "train_minutes": round(trainer.train_seconds / 60, 2), "steps": trainer.step,
        "episodes_in_data": int(len(task.episodes.lengths)), "tokens_per_timestep": task.tokens_per_timestep,
        "tokens_per_later_timestep": task.codec.tokens_per_later_step,
        "corrections": [{"minutes": round(h["minutes"], 2), "step": h["step"], **h["corrections"].get(task.name, {})}
                        for h in trainer.history if "corrections" in h],
        "curve": curve, "final": final, "final_stochastic": final_stochastic, "png": str(png),
    }


if __name__ == "__main__":
    main()

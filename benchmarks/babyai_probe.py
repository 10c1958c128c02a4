"""Where a BabyAI policy parts from the bot: first-step agreement, split by the bot's phase.

For each seed the env is reset, the bot plans its first action, and the checkpoint's policy
(argmax, no prompt) chooses its own from the same observation. States are split by whether
the bot must explore (the goal is not in view) or can go straight for the goal, and seeds by
whether they are the dataset's own (0..N-1: the policy was trained on these very states) or
unseen (1,000,000..). Low agreement on the dataset's own seeds means the policy has not fitted
the bot there yet; a gap between the two means it does not generalise.

    python benchmarks/babyai_probe.py runs/NAME/checkpoint --seeds 300

Prints one JSON object.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _common as C  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("checkpoint", help="a checkpoint folder whose tasks include one BabyAI dataset")
    parser.add_argument("--seeds", type=int, default=300, help="seeds of each kind (dataset's own, unseen)")
    parser.add_argument("--threads", type=int, default=1, help="torch threads")
    args = parser.parse_args()
    C.set_threads(args.threads)

    from minigrid.utils.baby_ai_bot import BabyAIBot

    from gato import seeds
    from gato.agent import Agent
    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import build_task, task_specs

    specs = task_specs(args.checkpoint)
    babyai = [s for s in specs if s["dataset_id"].startswith("babyai/")]
    if not babyai:
        sys.exit(f"{args.checkpoint} has no BabyAI task (its datasets: {[s['dataset_id'] for s in specs]})")
    policy = GatoPolicy.from_pretrained(args.checkpoint)
    task = build_task(babyai[0], policy.vocab)
    agent = Agent(policy, task)  # argmax actions
    env = task.make_env()

    def first_step(seed: int) -> tuple[bool, bool]:
        obs, _ = env.reset(seed=seed)
        bot = BabyAIBot(env.unwrapped)
        expert = int(bot.replan())
        exploring = any(goal.is_exploratory() for goal in bot.stack)
        agent.reset()  # no prompt, no earlier steps: the policy sees this observation alone
        return exploring, int(agent.act(obs)) == expert

    result = {"checkpoint": str(args.checkpoint), "task": task.name, "seeds": args.seeds}
    for kind, start in (("dataset_seeds", 0), ("unseen_seeds", seeds.EVALUATION.start)):
        counts = {True: [0, 0], False: [0, 0]}
        with C.stdout_to_stderr():  # minigrid prints its level-sampling retries
            for seed in range(start, start + args.seeds):
                exploring, agree = first_step(seed)
                counts[exploring][0] += agree
                counts[exploring][1] += 1
        result[kind] = {("explore" if k else "goal_in_view"): {"agreement": v[0] / max(1, v[1]), "states": v[1]}
                        for k, v in counts.items()}
    result["machine"] = C.machine_info("cpu")
    C.emit(result)


if __name__ == "__main__":
    main()

"""Expert corrections of a policy's own rollouts (DAgger, Ross et al. 2011).

Behaviour cloning only ever sees the states an expert visits. Once the cloned policy strays
(turns the wrong way, loops), it is in states no demonstration covers and its errors compound.
DAgger lets the policy act and asks the expert, at every state the policy reaches, what it
would have done; those labelled states join the training data.

An *advisor* follows a rollout (``gato.evaluation.rollout.rollout``'s ``observer``) and
records, for each live environment, the observation and the expert's action for it, while the
environment executes the policy's action. The BabyAI bot was written for this: told the action
actually taken (``bot.replan(action_taken)``), it keeps its memory of the level and replans.
"""

from __future__ import annotations

import numpy as np

from gato.data.babyai import BOT_NAME, babyai_observation_space
from gato.data.episodes import RawEpisodes
from gato.data.writer import stack_steps


class BabyAIBotAdvisor:
    """Rollout observer that labels every visited state with the BabyAI bot's action.

    ``episodes()`` returns the finished episodes as :class:`RawEpisodes` (observations, the
    bot's actions, the rewards the policy earned). An episode whose bot fails (it can raise on
    states it never plans for) keeps the steps labelled before the failure.
    """

    def __init__(self):
        self._done: list[dict] = []
        self.bot_errors = 0
        self.steps = self.disagreements = 0

    def reset(self, envs) -> None:
        """Start one bot per environment of a freshly reset vector env."""
        from minigrid.utils.baby_ai_bot import BabyAIBot

        self._space = babyai_observation_space(envs.single_observation_space)  # as stored in datasets
        self._bots = [BabyAIBot(env.unwrapped) for env in envs.envs]
        self._taken: list = [None] * len(self._bots)
        self._open = [{"obs": [], "actions": [], "rewards": []} for _ in self._bots]

    def before_step(self, obs, actions, live) -> None:
        """Ask each live env's bot for its action in the current state; remember the policy's."""
        for i in np.flatnonzero(live):
            bot, ep = self._bots[i], self._open[i]
            if bot is None:
                continue
            try:
                label = int(bot.replan(self._taken[i]))
            except Exception:  # the bot gives up on some odd states: keep what was labelled
                self.bot_errors += 1
                self._bots[i] = None
                continue
            ep["obs"].append({k: v[i] for k, v in obs.items()})
            ep["actions"].append(label)
            self._taken[i] = int(actions[i])
            self.steps += 1
            self.disagreements += label != self._taken[i]

    def after_step(self, rewards, finished) -> None:
        """Credit rewards; close the episodes that just ended."""
        for i, ep in enumerate(self._open):
            if len(ep["rewards"]) < len(ep["actions"]):
                ep["rewards"].append(float(rewards[i]))
            if finished[i] and ep["actions"]:
                self._done.append(ep)

    def episodes(self) -> RawEpisodes:
        """The labelled episodes so far, in the dataset's layout (T + 1 observations: the last
        one repeated, since only the first T are ever encoded)."""
        observations = []
        for ep in self._done:
            observations.append(stack_steps(ep["obs"] + ep["obs"][-1:], self._space, "observations"))
        return RawEpisodes(
            observations=observations,
            actions=[np.asarray(ep["actions"], dtype=np.int64) for ep in self._done],
            rewards=[np.asarray(ep["rewards"], dtype=np.float64) for ep in self._done],
            ids=[f"correction-{i}" for i in range(len(self._done))],
        )


ADVISORS = {BOT_NAME: BabyAIBotAdvisor}
"""Dataset ``algorithm_name`` -> advisor class, for the experts that can label any state."""


def advisor_for(algorithm_name: str | None):
    """A new advisor for datasets made by ``algorithm_name``, or None if that expert cannot advise."""
    cls = ADVISORS.get(algorithm_name or "")
    return cls() if cls is not None else None

"""Expert corrections of a policy's own rollouts (DAgger, Ross et al. 2011).

Behaviour cloning only ever sees the states an expert visits. Once the cloned policy strays
(turns the wrong way, loops, lets a paddle drift from the ball), it is in states no
demonstration covers and its errors compound. DAgger lets the policy act and asks the expert,
at every state the policy reaches, what it would have done; those labelled states join the
training data.

:func:`collect_corrections` runs one round for a task. An *advisor* follows its rollout
(``gato.evaluation.rollout.rollout``'s ``observer``) and records, for each live environment,
the observation and the expert's action for it, while the environment executes the policy's
action. Two kinds of expert can advise: the BabyAI bot
(told the action actually taken, ``bot.replan(action_taken)``, it keeps its memory of the
level and replans) and the recipes' experts (``gato.data.recipes``), which read the state of
the env they are bound to and so can act from any state.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np

from gato.data.babyai import BOT_NAME, babyai_observation_space
from gato.data.episodes import RawEpisodes
from gato.data.writer import stack_steps
from gato.evaluation.rollout import rollout
from gato.seeds import correction_seeds


def collect_corrections(task, policy, n_episodes: int, round_index: int = 0) -> dict | None:
    """One DAgger round: run ``policy`` (argmax actions, no prompt) for ``n_episodes`` episodes
    of ``task``'s env while the dataset's expert labels every state it reaches, and add them
    to the task's data (``task.add_episodes``).

    Round ``round_index`` (round * processes + process) plays its own seeds of
    ``gato.seeds.CORRECTIONS`` (:func:`gato.seeds.correction_seeds`). Returns counts (episodes,
    steps, share of steps where the policy's action differed from the expert's, expert errors,
    the task's episodes now), or None when the dataset's expert cannot label states (see
    :func:`advisor_for`).
    """
    advisor = advisor_for(task.expert_name)
    if advisor is None:
        return None
    policy = getattr(policy, "module", policy)
    codec = task.codec_for(policy.vocab)
    # the rollout's last round of envs may start up to eval_envs - 1 episodes more, all recorded
    n_envs = max(1, min(task.eval_envs, n_episodes))
    first = correction_seeds(round_index, n_episodes + n_envs - 1).start
    rollout(policy, codec, task.make_env, n_episodes, n_envs=n_envs, seed=first, observer=advisor)
    raw = advisor.episodes()
    if len(raw):
        task.add_episodes(raw)
    return {"episodes": len(raw), "steps": advisor.steps, "disagreement": advisor.disagreements / max(1, advisor.steps),
            "expert_errors": advisor.expert_errors, "total_episodes": len(task.episodes.lengths)}


class _Advisor:
    """Records, per live env, each observation with the expert's label; subclasses label."""

    def __init__(self):
        self._done: list[dict] = []
        self.expert_errors = 0
        self.steps = self.disagreements = 0

    def _start(self, envs, space) -> None:
        self._space, self._env_space = space, envs.single_observation_space
        self._action_space = envs.single_action_space
        self._open = [{"obs": [], "actions": [], "taken": [], "rewards": []} for _ in range(envs.num_envs)]
        self._failed = [False] * envs.num_envs

    def _label(self, i: int, obs_i):
        raise NotImplementedError

    def before_step(self, obs, actions, live) -> None:
        """Ask each live env's expert for its action in the current state; remember the policy's."""
        for i in np.flatnonzero(live):
            if self._failed[i]:
                continue
            obs_i = _index(self._env_space, obs, i)
            try:
                label = self._label(i, obs_i)
            except Exception:  # experts can give up on odd states: keep what was labelled
                self.expert_errors += 1
                self._failed[i] = True
                continue
            taken = _index(self._action_space, actions, i)
            self._taken(i, taken)
            ep = self._open[i]
            ep["obs"].append(obs_i)
            ep["actions"].append(label)
            ep["taken"].append(taken)
            self.steps += 1
            self.disagreements += not np.array_equal(np.asarray(label), np.asarray(taken))

    def _taken(self, i: int, action) -> None:
        """Hook: the action env ``i`` is about to execute."""

    def after_step(self, rewards, finished) -> None:
        """Credit rewards; close the episodes that just ended."""
        for i, ep in enumerate(self._open):
            if len(ep["rewards"]) < len(ep["actions"]):
                ep["rewards"].append(float(rewards[i]))
            if finished[i] and ep["actions"]:
                self._done.append(ep)

    def episodes(self) -> RawEpisodes:
        """The labelled episodes so far, in the dataset's layout (T + 1 observations: the last
        one repeated, since only the first T are ever encoded), with the expert's labels as
        ``actions`` and the policy's own as ``taken``: a policy that reads its history must
        learn from the history it really had, or the observations contradict the actions."""
        observations = [stack_steps(ep["obs"] + ep["obs"][-1:], self._space, "observations") for ep in self._done]
        dtype = getattr(self._action_space, "dtype", None) or np.int64
        return RawEpisodes(
            observations=observations,
            actions=[np.asarray(ep["actions"], dtype=dtype) for ep in self._done],
            rewards=[np.asarray(ep["rewards"], dtype=np.float64) for ep in self._done],
            ids=[f"correction-{i}" for i in range(len(self._done))],
            taken=[np.asarray(ep["taken"], dtype=dtype) for ep in self._done],
        )


class BabyAIBotAdvisor(_Advisor):
    """Rollout observer that labels every visited state with the BabyAI bot's action.

    ``episodes()`` returns the finished episodes as :class:`RawEpisodes` (observations, the
    bot's actions, the rewards the policy earned). An episode whose bot fails (it can raise on
    states it never plans for) keeps the steps labelled before the failure.
    """

    def reset(self, envs) -> None:
        """Start one bot per environment of a freshly reset vector env."""
        from minigrid.utils.baby_ai_bot import BabyAIBot

        # as stored in datasets: the mission as a Text space
        self._start(envs, babyai_observation_space(envs.single_observation_space))
        self._bots = [BabyAIBot(env.unwrapped) for env in envs.envs]
        self._last = [None] * len(self._bots)

    def _label(self, i, obs_i) -> int:
        return int(self._bots[i].replan(self._last[i]))

    def _taken(self, i, action) -> None:
        self._last[i] = int(action)


class RecipeExpertAdvisor(_Advisor):
    """Rollout observer that labels every visited state with a recipe's expert
    (``Class(env)``, ``expert.reset(seed=None)``, ``expert(obs)``; see ``gato.data.recipes``)."""

    def __init__(self, expert_class):
        super().__init__()
        self._expert_class = expert_class

    def reset(self, envs) -> None:
        """Bind one expert to each environment of a freshly reset vector env."""
        self._start(envs, envs.single_observation_space)
        self._experts = [self._expert_class(env) for env in envs.envs]
        for expert in self._experts:
            expert.reset(seed=None)

    def _label(self, i, obs_i):
        return self._experts[i](obs_i)


def _index(space, batch, i: int):
    """Env ``i``'s part of a vector env's ``batch`` of samples of ``space`` (Dict and Tuple
    spaces batch field by field; any other space, strings included, is one sequence)."""
    if isinstance(space, gym.spaces.Dict):
        return {k: _index(space[k], batch[k], i) for k in space.keys()}
    if isinstance(space, gym.spaces.Tuple):
        return tuple(_index(s, b, i) for s, b in zip(space.spaces, batch))
    return batch[i]


def advisor_for(algorithm_name: str | None):
    """A new advisor for datasets made by ``algorithm_name`` (a dataset's ``algorithm_name``:
    the BabyAI bot, or a recipe's ``"module:Class"`` expert), or None if that expert cannot advise."""
    if algorithm_name == BOT_NAME:
        return BabyAIBotAdvisor()
    from gato.data.recipes import RECIPES, _resolve

    if algorithm_name in {r.expert for r in RECIPES.values()}:
        return RecipeExpertAdvisor(_resolve(algorithm_name))
    return None

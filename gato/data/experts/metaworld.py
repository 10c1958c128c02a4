"""Meta-World: the 50 Sawyer-arm tasks, their scripted policies, and datasets of them (``gato data metaworld``).

**The environment.** ``make_metaworld_env(task)`` (Gymnasium id :data:`ENV_ID`, registered by
:mod:`gato.envs` with this function's name as a string entry point, so a Minari dataset's env spec
names it and ``recover_environment`` remakes it) is one task with its goal in the observation
(Meta-World's multi-task setting: 39 numbers, the last 3 the goal), Meta-World's 500-step
horizon and reward, and no termination on success. Meta-World ignores ``reset(seed=...)`` and its
``Meta-World/MT1`` env picks one of 50 goals per reset from a generator seeded once, when the env
is made, so an episode there depends on how many came before it. Here ``reset(seed=s)`` reseeds
the env, and the goal and object positions are drawn from the task's reset distribution (the one
Meta-World's 50 MT goals were drawn from) by that seed alone. So episode ``s`` is the same episode
in every process, and the seed blocks of :mod:`gato.seeds` keep data, evaluation and reference
episodes apart: evaluation goals are goals the data never showed (stricter than MT10/MT50, which
score a policy on its 50 training goals).

**Episodes run the full 500 steps** and are not ended at success. The scripted policies first
succeed at step 26-228 (median 72) and then hold the goal, so most of a recorded episode is
holding (45 tokens a step). Ending at success (Meta-World's ``AutoTerminateOnSuccessWrapper``)
would shorten the data, but a return would then sum ~70 expert steps against 500 random ones: the
random policy's 500-step return exceeds the expert's return up to success on 20 of the 50 tasks
(``benchmarks/metaworld_horizon.py``, 3 episodes each), so the normalised score would mean
nothing. A shorter horizon for every policy (``max_episode_steps``) keeps returns comparable, at
the price of failing slow episodes. Evaluation plays the dataset's own env spec, hence the same
horizon; its success rate is Meta-World's measure, ``info["success"]`` at any step
(:func:`gato.evaluation.rollout.rollout` counts it for any env that reports it).

**Data.** :func:`generate_metaworld` plays, for every task in one pool of worker processes
(:func:`gato.data.generation.generate_many`, one progress bar), the scripted policy with DART
noise on the executed actions (the dataset stores the policy's clean action), clean expert
episodes and uniform-random episodes on the reference seeds; each task's dataset
``metaworld/<task>-scripted-v0`` records the reference returns (``ref_max_score`` /
``ref_min_score``) and the success rates of the three kinds of episode. Tasks whose
clean expert fails more than :data:`FAILURE_TOLERANCE` of its episodes are
reported.
"""

from __future__ import annotations

import dataclasses
import functools
import re
from typing import Any

import numpy as np

from gato.data.generation import Collected, DatasetJob, GenerationReport, generate_many
from gato.data.recipes import MissingDependencyError, Recipe, RecipeMaker, _RecipeSource
from gato.seeds import DATA

__all__ = ["ENV_ID", "FAILURE_TOLERANCE", "HORIZON", "MAKER", "METAWORLD_DATASET_ID", "MetaWorldExpert", "TaskReport",
           "dataset_id_for", "generate_metaworld", "make_metaworld_env", "metaworld_recipe", "resolve_tasks",
           "summary_rows"]

ENV_ID = "gato/MetaWorld-v0"
"""The Gymnasium id of one Meta-World task: ``gym.make(ENV_ID, task="reach-v3")``."""

HORIZON = 500
"""Meta-World's episode length (``max_path_length``); its envs refuse to step past it."""

FAILURE_TOLERANCE = 0.05
"""A task whose clean scripted policy fails more than this share of its episodes is reported."""

ACTION_NOISE = 0.1
"""DART noise: Gaussian, this std times half the action range (1), on the executed action."""

REFERENCE_EPISODES = 50
"""Clean-expert and random episodes per task for the reference returns and success rates."""

METAWORLD_DATASET_ID = re.compile(r"^metaworld/(?P<task>[a-z0-9-]+-v3)-scripted-v0$")
"""The dataset ids ``gato data metaworld`` writes (and ``gato train`` makes when missing)."""

RENDER_SIZE = 240
"""Side of rendered frames (Meta-World's 480 makes 500-frame GIFs of hundreds of MB in memory)."""


def _metaworld():
    """The ``metaworld`` package, or :class:`MissingDependencyError` naming the extra."""
    try:
        import metaworld
        import metaworld.env_dict
        import metaworld.policies
    except ImportError as err:
        raise MissingDependencyError('Meta-World needs the metaworld package: install it with '
                                     '`.venv/bin/pip install -e ".[metaworld]"` (or the \'all\' extra).') from err
    return metaworld


def all_tasks() -> list[str]:
    """Every Meta-World v3 task name, in MT50's order."""
    return list(_metaworld().env_dict.MT50_V3)


def resolve_tasks(names) -> list[str]:
    """Task names from ``names``: task names, ``mt10`` or ``mt50`` (Meta-World's own benchmark lists),
    duplicates dropped, order kept. Raises ValueError naming the known tasks on an unknown one."""
    env_dict = _metaworld().env_dict
    sets = {"mt10": list(env_dict.MT10_V3), "mt50": list(env_dict.MT50_V3)}
    if isinstance(names, str):
        names = [names]
    tasks: list[str] = []
    for name in names:
        found = sets.get(name.lower(), [name])
        unknown = [t for t in found if t not in env_dict.ALL_V3_ENVIRONMENTS]
        if unknown:
            raise ValueError(f"unknown Meta-World task {name!r}: use mt10, mt50 or task names such as "
                             f"{', '.join(list(env_dict.ALL_V3_ENVIRONMENTS)[:4])}, ... "
                             f"(all {len(env_dict.ALL_V3_ENVIRONMENTS)}: metaworld.env_dict.ALL_V3_ENVIRONMENTS)")
        tasks += [t for t in found if t not in tasks]
    if not tasks:
        raise ValueError("no Meta-World task given: name tasks, or mt10 / mt50")
    return tasks


@functools.cache
def _seeded_class(task: str) -> type:
    """The task's env class with a ``reset(seed=...)`` that reseeds it (Meta-World's own ignores the seed)."""
    base = _metaworld().env_dict.ALL_V3_ENVIRONMENTS[task]

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self.seed(seed)  # np_random (which draws the goal), and the spaces' samplers
        return base.reset(self, seed=None, options=options)

    def render(self):
        frame = base.render(self)
        if frame is not None and (self.camera_name or "").startswith("corner"):
            # Meta-World's corner cameras are mounted upside down; a camera pose only rotates the picture
            frame = np.ascontiguousarray(frame[::-1, ::-1])
        return frame

    name = base.__name__ + "Seeded"
    return type(name, (base,), {"reset": reset, "render": render,
                                "__doc__": f"{base.__name__}, goal drawn from the reset seed."})


def make_metaworld_env(task: str, render_mode: str | None = None, width: int = RENDER_SIZE,
                       height: int = RENDER_SIZE, camera_name: str | None = "corner"):
    """One Meta-World task (``"reach-v3"``, ...), goal observable, goal and objects drawn from the reset seed.
    Frames (``render_mode="rgb_array"``) are ``width`` x ``height``, from Meta-World's ``corner`` camera turned upright.

    The entry point of :data:`ENV_ID` (``gym.make`` adds the 500-step time limit). Raises
    ValueError for an unknown task and MissingDependencyError when metaworld is not installed.
    """
    resolve_tasks([task])
    env = _seeded_class(task)(render_mode=render_mode, width=width, height=height, camera_name=camera_name)
    env._partially_observable = False  # the goal's position is the observation's last 3 numbers
    env._set_task_called = True  # no Meta-World Task object: the goal comes from the seed
    env._freeze_rand_vec = False
    env.seeded_rand_vec = True  # draw the goal from the env's seeded generator, not numpy's global one
    del env.sawyer_observation_space  # cached with the goal hidden (bounds 0); recomputed with its bounds
    env.observation_space = env.sawyer_observation_space
    env.seed(0)  # a defined state before the first seeded reset
    return env


def dataset_id_for(task: str) -> str:
    """The default dataset id of a task: ``metaworld/<task>-scripted-v0``."""
    return f"metaworld/{task}-scripted-v0"


class MetaWorldExpert:
    """Meta-World's scripted policy for the env's task (``metaworld.policies.ENV_POLICY_MAP``), actions clipped to
    the action space. Stateless: it reads the hand, object and goal positions from each observation."""

    def __init__(self, env):
        task = env.spec.kwargs["task"]
        self.policy = _metaworld().policies.ENV_POLICY_MAP[task]()
        self.low, self.high = env.action_space.low, env.action_space.high

    def reset(self, seed: int | None = None) -> None:
        """Stateless: nothing to reset."""

    def __call__(self, obs) -> np.ndarray:
        return np.clip(self.policy.get_action(obs), self.low, self.high).astype(np.float32)


def metaworld_recipe(task: str) -> Recipe:
    """The :class:`gato.data.recipes.Recipe` of one task (dataset ``metaworld/<task>-scripted-v0``)."""
    return Recipe(f"metaworld-{task}", ENV_ID, "gato.data.experts.metaworld:MetaWorldExpert",
                  f"Meta-World {task} (goal observable, drawn from the reset seed), Meta-World's scripted policy",
                  env_kwargs={"task": task}, requires=("metaworld",), extra="metaworld",
                  reference_episodes=REFERENCE_EPISODES, action_noise=ACTION_NOISE, dataset=dataset_id_for(task),
                  # the 39 numbers as one position, not 39 tokens: MT10 learnt faster per step and per minute
                  # (docs/EXPERIMENTS.md, 2026-12-07); --field_overrides '{"": "continuous"}' reads them as tokens
                  field_overrides={"": "vector"})


# --------------------------------------------------------------------------- generation


@dataclasses.dataclass
class TaskReport:
    """One task's dataset: what was written and the references measured (returns and success rates)."""

    task: str
    dataset_id: str
    episodes_written: int
    expert_mean_return: float
    random_mean_return: float
    expert_success_rate: float
    random_success_rate: float
    demo_success_rate: float
    demo_mean_return: float
    generation: GenerationReport
    """The driver's report of the dataset (skips, spreads, time), as ``gato train`` reports a dataset it makes."""

    @property
    def expert_fails(self) -> bool:
        """The clean scripted policy failed more than :data:`FAILURE_TOLERANCE` of its episodes."""
        return not self.expert_success_rate >= 1.0 - FAILURE_TOLERANCE


@dataclasses.dataclass(frozen=True)
class _MetaWorldSource(_RecipeSource):
    """A task's scripted-policy episodes (a recipe's source) whose metadata adds Meta-World's measure, the success
    rate of each kind of episode."""

    def metadata(self, collected: Collected, action_space) -> dict[str, Any]:
        """The recipe's metadata, with the success rates of the clean expert, random and recorded episodes."""
        from gato.data.generation import success_rate

        meta = super().metadata(collected, action_space)
        rates = {"expert": success_rate(collected.expert_successes), "random": success_rate(collected.random_successes),
                 "demo": success_rate(collected.demo_successes)}
        meta["description"] += (f" Success (info['success'] at any step): clean expert {rates['expert']:.3f}, "
                                f"uniform random {rates['random']:.3f}, recorded (perturbed) episodes "
                                f"{rates['demo']:.3f}.")
        meta["extra_metadata"].update(metaworld_task=self.recipe.env_kwargs["task"],
                                      expert_success_rate=rates["expert"], random_success_rate=rates["random"],
                                      demo_success_rate=rates["demo"])
        return meta


def _task_report(task: str, report: GenerationReport) -> TaskReport:
    """A task's row of what the driver reports."""
    return TaskReport(task, report.dataset_id, report.episodes_written, report.expert_mean_return,
                      report.random_mean_return, report.expert_success_rate, report.random_success_rate,
                      report.demo_success_rate, report.demo_mean_return, report)


def generate_metaworld(tasks, episodes: int = 100, *, seed: int = 0, workers: int = 2,
                       reference_episodes: int = REFERENCE_EPISODES, overwrite: bool = False, progress: bool = True,
                       max_episode_steps: int | None = None, action_noise: float | None = None,
                       skip_existing: bool = False) -> list[TaskReport]:
    """Write one dataset ``metaworld/<task>-scripted-v0`` per task of ``tasks`` (names, ``mt10`` or ``mt50``).

    All tasks' episodes are played by one pool of ``workers`` spawned processes under one progress
    bar (:func:`gato.data.generation.generate_many`; each dataset is written when complete): per task,
    ``episodes`` demonstrations (seeds ``seed .. seed+episodes-1``, the executed action perturbed by
    ``action_noise``, default :data:`ACTION_NOISE`; the stored action is the
    policy's), and ``reference_episodes`` clean-expert and uniform-random episodes on the
    reference seeds. ``max_episode_steps`` (at most 500) shortens every episode, evaluation's
    included (it is stored in the env spec). With ``skip_existing``, tasks whose dataset exists
    are left alone (and not reported). A script calling this needs an ``if __name__ == "__main__":`` guard.

    Raises:
        ValueError: unknown task, bad counts, seeds outside the data block, horizon over 500.
        FileExistsError: a dataset exists and neither ``overwrite`` nor ``skip_existing`` is set
            (checked before any episode is played). MissingDependencyError: no metaworld.
    """
    from gato.data.writer import local_dataset_exists, validate_dataset_id

    tasks = resolve_tasks(tasks)
    if isinstance(episodes, bool) or not isinstance(episodes, int) or episodes <= 0:
        raise ValueError(f"episodes must be a positive int, got {episodes!r}")
    if not isinstance(workers, int) or workers <= 0:
        raise ValueError(f"workers must be a positive int (worker processes), got {workers!r}")
    if not isinstance(reference_episodes, int) or reference_episodes <= 0:
        raise ValueError(f"reference_episodes must be a positive int (the normalised score needs them), "
                         f"got {reference_episodes!r}")
    if max_episode_steps is not None and not 0 < max_episode_steps <= HORIZON:
        raise ValueError(f"max_episode_steps must be in [1, {HORIZON}] (Meta-World's envs stop at {HORIZON}), "
                         f"got {max_episode_steps}")
    DATA.take(episodes, seed)  # demonstrations stay out of the evaluation and reference blocks
    todo = []
    for task in tasks:
        dataset_id = dataset_id_for(task)
        validate_dataset_id(dataset_id)
        if local_dataset_exists(dataset_id) and not overwrite:
            if skip_existing:
                continue
            raise FileExistsError(f"Minari dataset {dataset_id!r} already exists; pass overwrite=True (--overwrite) "
                                  "to replace it")
        todo.append(task)
    if not todo:
        return []
    noise = ACTION_NOISE if action_noise is None else float(action_noise)
    jobs = [DatasetJob(_MetaWorldSource(metaworld_recipe(t), max_episode_steps, noise), episodes, dataset_id_for(t),
                       seed, reference_episodes) for t in todo]
    reports = generate_many(jobs, workers=workers, overwrite=overwrite, progress=progress,
                            description=f"Meta-World, {len(todo)} task(s)")
    return [_task_report(task, report) for task, report in zip(todo, reports)]


def summary_rows(reports: list[TaskReport], only_failing: bool = False) -> list[dict]:
    """Table rows (for ``gato.table.format_table``) of the reports, or of the tasks whose expert fails too often."""
    return [{"task": r.task, "episodes": r.episodes_written, "expert success": f"{r.expert_success_rate:.2f}",
             "demo success": f"{r.demo_success_rate:.2f}", "random success": f"{r.random_success_rate:.2f}",
             "expert return": f"{r.expert_mean_return:.0f}", "random return": f"{r.random_mean_return:.0f}"}
            for r in reports if r.expert_fails or not only_failing]


class _MetaWorldMaker(RecipeMaker):
    """Meta-World's tasks in the catalogue: ``metaworld/<task>-scripted-v0``, written by ``gato data metaworld``."""

    reference_episodes: int = REFERENCE_EPISODES
    """Clean-expert and random reference episodes of a dataset made on the spot."""
    max_episode_steps: int | None = None
    """Horizon of a dataset made on the spot (None: Meta-World's 500)."""

    def describe(self, dataset_id: str) -> str:
        return f"Meta-World {METAWORLD_DATASET_ID.match(dataset_id)['task']} scripted-policy"

    def make(self, dataset_id: str, episodes: int, progress: bool = True) -> GenerationReport:
        """``gato data metaworld``'s own path (not the generic recipe driver's), so a dataset made on the spot by
        ``gato train`` carries the clean-expert, random and demonstration success rates as one made by the
        command does. Spawns worker processes: the caller needs an ``if __name__ == "__main__":`` guard."""
        (report,) = generate_metaworld([METAWORLD_DATASET_ID.match(dataset_id)["task"]], episodes, progress=progress,
                                       reference_episodes=self.reference_episodes,
                                       max_episode_steps=self.max_episode_steps)
        if report.expert_fails:
            print(f"warning: {report.task}'s scripted policy succeeded on only {report.expert_success_rate:.0%} of "
                  "its clean reference episodes")
        return report.generation

    def command(self, dataset_id: str) -> str:
        return f"`gato data metaworld --tasks {METAWORLD_DATASET_ID.match(dataset_id)['task']} --overwrite`"


def _recipe_of(dataset_id: str) -> Recipe | None:
    """The recipe of a Meta-World dataset id, or None."""
    match = METAWORLD_DATASET_ID.match(dataset_id)
    return None if match is None else metaworld_recipe(match["task"])


MAKER = _MetaWorldMaker("metaworld", _recipe_of, lambda: [
    {"recipe": "metaworld", "dataset id": "metaworld/TASK-scripted-v0", "extra": "metaworld",
     "what": "Meta-World tasks (--tasks NAME ...|mt10|mt50), scripted policies"}])
"""Meta-World, as :mod:`gato.data.catalogue` lists it."""

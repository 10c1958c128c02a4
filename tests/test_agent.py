"""gato.agent.Agent: acting in Gymnasium envs one step at a time (single env and vector env),
the same episodes as rollout on the same seeds, cached or not, past a full context; the errors."""

from __future__ import annotations

from argparse import Namespace

import gymnasium as gym
import numpy as np
import pytest
import torch

from gato.agent import Agent
from gato.codec import SpaceCodec, VocabMismatchError
from gato.envs import play_episode
from gato.evaluation.rollout import rollout
from gato.vocab import Vocab


def pendulum(**kwargs):
    return gym.make("Pendulum-v1", max_episode_steps=20, **kwargs)


def source_and_env(name, request, model):
    """(what the agent is built from, a function making its env) for a fixture task or Pendulum."""
    if name == "pendulum":
        return pendulum(), pendulum
    task = request.getfixturevalue(name)
    task.encode_for(model.vocab)
    return task, task.make_env


def checked(agent, space, seen):
    """agent.act that checks every action lies in ``space`` and counts the steps."""
    def act(obs):
        action = agent.act(obs)
        assert space.contains(action), action
        seen.append(action)
        return action
    return act


SLOW_BABYAI = pytest.param("babyai_task", marks=pytest.mark.slow)  # an untrained policy wanders for 64 steps


@pytest.mark.parametrize("name", [SLOW_BABYAI, "cartpole_task", "pendulum"])
@pytest.mark.parametrize("deterministic", [True, False])
def test_agent_plays_episodes_with_valid_actions(name, deterministic, request, tiny_policy):
    """BabyAI (Dict obs: image, direction, mission string), CartPole, Pendulum (continuous
    actions): every action the agent gives is one of the env's."""
    model = tiny_policy()
    source, make_env = source_and_env(name, request, model)
    agent = Agent(model, source, deterministic=deterministic, generator=torch.Generator().manual_seed(0))
    env = make_env()
    if name == "babyai_task":
        assert isinstance(env.reset(seed=0)[0]["mission"], str)
    for seed in (0, 1):
        seen = []
        agent.reset()
        episode = play_episode(env, checked(agent, env.action_space, seen), seed)
        assert episode.length == len(seen) >= 1
    env.close()


@pytest.mark.parametrize("name", ["babyai_task", "cartpole_task", "pendulum"])
def test_act_batch_steps_a_vector_env(name, request, tiny_policy):
    model = tiny_policy()
    source, make_env = source_and_env(name, request, model)
    agent = Agent(model, source, deterministic=False, generator=torch.Generator().manual_seed(0))
    envs = gym.vector.SyncVectorEnv([make_env for _ in range(3)])
    obs, _ = envs.reset(seed=[0, 1, 2])
    agent.reset(n_envs=3)
    for _ in range(8):
        actions = agent.act_batch(obs)
        assert envs.action_space.contains(actions), actions
        obs, *_ = envs.step(actions)
    envs.close()


class ActionRecorder:
    """A rollout observer that keeps the actions of env 0 while its episode is live."""

    def __init__(self):
        self.actions = []

    def reset(self, envs):
        pass

    def before_step(self, obs, actions, live):
        if live[0]:
            self.actions.append(np.asarray(actions)[0])

    def after_step(self, rewards, finished):
        pass


@pytest.mark.parametrize("name", [SLOW_BABYAI, "cartpole_task", "pendulum"])
@pytest.mark.parametrize("deterministic", [True, False])
@pytest.mark.parametrize("use_cache", [True, False])
def test_agent_plays_the_episodes_rollout_plays(name, deterministic, use_cache, request, tiny_policy):
    """One env, episode i on seed + i, one generator for all (rollout's): the same actions,
    returns and lengths."""
    model = tiny_policy(context_len=48)
    source, make_env = source_and_env(name, request, model)
    agent = Agent(model, source, deterministic=deterministic, use_cache=use_cache,
                        generator=torch.Generator().manual_seed(7))
    seed, env = 7, make_env()
    played, actions = [], []
    for i in range(2):
        agent.reset()
        played.append(play_episode(env, checked(agent, env.action_space, actions), seed + i))
    env.close()
    recorder = ActionRecorder()
    result = rollout(model, agent.codec, make_env, 2, n_envs=1, deterministic=deterministic, seed=seed,
                     use_cache=use_cache, observer=recorder)
    assert result.returns == [e.total for e in played]
    assert result.lengths == [e.length for e in played]
    np.testing.assert_array_equal(np.stack(recorder.actions), np.stack(actions))


@pytest.mark.slow
@pytest.mark.parametrize("deterministic", [True, False])
def test_a_prompted_agent_plays_the_episodes_rollout_plays(deterministic, babyai_task, tiny_policy):
    model = tiny_policy()
    codec = babyai_task.encode_for(model.vocab)
    prompt = babyai_task.eval_prompt(codec, np.random.default_rng(0), model.context_len)
    agent = Agent(model, babyai_task, deterministic=deterministic, generator=torch.Generator().manual_seed(3))
    env = babyai_task.make_env()
    agent.reset(prompt=prompt(1))
    episode = play_episode(env, agent.act, 3)
    env.close()
    prompt = babyai_task.eval_prompt(codec, np.random.default_rng(0), model.context_len)
    result = rollout(model, codec, babyai_task.make_env, 1, n_envs=1, deterministic=deterministic, seed=3,
                     prompt=prompt)
    assert (result.returns, result.lengths) == ([episode.total], [episode.length])


def test_uncached_rollout_without_images_or_prompt_matches_the_cache(cartpole_task, tiny_policy):
    """NEKO's uncached path on an env without images (it used to fail joining empty patch lists)."""
    model = tiny_policy(context_len=24)
    codec = cartpole_task.encode_for(model.vocab)
    runs = [rollout(model, codec, cartpole_task.make_env, 3, n_envs=2, deterministic=False, seed=0, use_cache=c)
            for c in (True, False)]
    assert (runs[0].returns, runs[0].lengths) == (runs[1].returns, runs[1].lengths)


@pytest.mark.parametrize("name", ["babyai_task", "cartpole_task"])
def test_the_agent_keeps_acting_after_the_context_fills(name, request, tiny_policy, monkeypatch):
    """A long episode through a small context: acting goes on. Without fields read once per window the oldest
    tokens are dropped; BabyAI reads its mission once per window, so its context restarts from recent timesteps
    instead, the first laid out whole (the mission never leaves the context)."""
    from gato.policy.transformer import KVCache

    dropped, refills = [], []
    original_drop, original_refill = KVCache.drop_oldest, Agent._refill
    monkeypatch.setattr(KVCache, "drop_oldest", lambda self, n: (dropped.append(n), original_drop(self, n))[1])
    monkeypatch.setattr(Agent, "_refill", lambda self: (refills.append(self._fed), original_refill(self))[1])
    model = tiny_policy(context_len=24)
    task = request.getfixturevalue(name)
    agent = Agent(model, task.encode_for(model.vocab), deterministic=False,
                        generator=torch.Generator().manual_seed(0))
    env = gym.make(task.env.spec, max_episode_steps=60)
    seen = []
    agent.reset()
    episode = play_episode(env, checked(agent, env.action_space, seen), 0)
    env.close()
    assert episode.length == len(seen)
    assert episode.length * task.codec.tokens_per_later_step > 2 * model.context_len  # the context filled, twice
    if name == "babyai_task":
        assert task.codec.tokens_per_later_step < task.codec.tokens_per_step
        assert len(refills) >= 2 and max(refills) <= model.context_len and not dropped
    else:
        assert dropped and min(dropped) > 0 and not refills


def test_a_windowed_agents_context_is_always_a_training_window(babyai_task, tiny_policy):
    """Acting through a small context, the agent's context is at every step what training shows: whole
    timesteps from the context's start, the first with the mission, the later ones without (then the observation
    just fed, and the action's tokens but its last); and the cache acts exactly as re-running that context."""
    from gato.batch import StepLayout, pack
    from gato.policy.gato_policy import concat_streams

    model = tiny_policy(context_len=40)
    codec = babyai_task.encode_for(model.vocab)
    layout = StepLayout.of(codec)
    assert codec.timesteps_in(40) >= 3 and codec.obs_once.any()
    agent = Agent(model, codec, use_cache=False)
    env = gym.make(babyai_task.env.spec, max_episode_steps=40)
    obs, _ = env.reset(seed=5)
    agent.reset()
    refilled, steps = 0, 0
    for _ in range(40):
        action = agent.act(obs)
        steps += 1
        context = concat_streams(agent._cache.chunks, model.context_len)
        fed = context["tokens"].shape[1]
        assert fed <= model.context_len
        k = codec.timesteps_in(fed + 1)  # the last action token is generated, not fed
        recent = agent._recent[-k:]
        window = pack([[[(np.concatenate([t for t, _ in recent]), np.concatenate([p for _, p in recent]), None)]]],
                      layout, codec.window_tokens(k), model.vocab.pad)
        assert codec.window_tokens(k) == fed + 1
        np.testing.assert_array_equal(context["tokens"][0].numpy(), window.tokens[0, :fed])
        np.testing.assert_array_equal(context["in_step_pos"][0].numpy(), window.in_step_pos[0, :fed])
        refilled += k < steps
        obs, _, terminated, truncated, _ = env.step(action)
        if terminated or truncated:
            break
    env.close()
    assert refilled, "the context never filled"


@pytest.mark.slow
def test_a_windowed_rollout_through_the_cache_matches_the_uncached_one(babyai_task, tiny_policy):
    """BabyAI reads its mission once per window: through refills and the FiLM's carried text, the cached agent
    plays the episodes the uncached one plays."""
    model = tiny_policy(context_len=40)
    codec = babyai_task.encode_for(model.vocab)
    runs = [rollout(model, codec, babyai_task.make_env, 3, n_envs=2, deterministic=False, seed=0, use_cache=c)
            for c in (True, False)]
    assert (runs[0].returns, runs[0].lengths) == (runs[1].returns, runs[1].lengths)
    assert max(runs[0].lengths) * codec.tokens_per_later_step > model.context_len  # the context filled


class LiveActions:
    """A rollout observer that keeps, per env, the actions given while its counted episode runs."""

    def reset(self, envs):
        self.actions = [[] for _ in range(envs.num_envs)]
        self.rounds = getattr(self, "rounds", []) + [self.actions]

    def before_step(self, obs, actions, live):
        for i in np.flatnonzero(live):
            self.actions[i].append(np.asarray(actions[i]).tolist())

    def after_step(self, rewards, finished):
        pass


def staggered(make_env):
    """``make_env`` whose k-th env (of one vector env) ends its episodes after 3 + 4k steps at most, so that the
    envs of a round finish one by one."""
    made = iter(range(10**6))
    return lambda: gym.wrappers.TimeLimit(make_env(), 3 + 4 * next(made))


@pytest.mark.parametrize("name", [SLOW_BABYAI, "cartpole_task", "pendulum"])
@pytest.mark.parametrize("use_cache", [True, False])
def test_envs_whose_episodes_ended_leave_the_batch_and_the_others_play_on_unchanged(name, use_cache, request,
                                                                                   tiny_policy, monkeypatch):
    """Compacted (the default), the agent acts only for the envs whose counted episode runs, and every episode
    is the one the whole round's batch plays: same actions, returns and lengths. 5 episodes on 3 envs: the second
    round's spare env is never acted for. The context fills (BabyAI: refilled with its mission)."""
    model = tiny_policy(context_len=40)
    source, make_env = source_and_env(name, request, model)
    codec = Agent(model, source).codec
    rows = []
    original = Agent.act_batch
    monkeypatch.setattr(Agent, "act_batch", lambda self, obs: (rows.append(self.n_envs), original(self, obs))[1])
    runs, observers = [], []
    for compact in (False, True):
        rows.clear()
        observers.append(LiveActions())
        runs.append(rollout(model, codec, staggered(make_env), 5, n_envs=3, seed=11, use_cache=use_cache,
                            observer=observers[-1], compact=compact))
        runs[-1].rows = list(rows)
    whole, compacted = runs
    assert (compacted.returns, compacted.lengths, compacted.seeds) == (whole.returns, whole.lengths, whole.seeds)
    counted = [observers[0].rounds[0], observers[0].rounds[1][:2]]
    assert observers[1].rounds == [counted[0], counted[1] + [[]]]  # the spare env is stepped, never acted for
    assert len(set(whole.lengths[:3])) == 3 and max(whole.lengths) * codec.tokens_per_later_step > 40
    assert set(whole.rows) == {3}
    assert sum(compacted.rows) == sum(whole.lengths)  # one row per step of a counted episode, no more


def test_agent_accepts_spaces_and_envs(tiny_policy):
    model = tiny_policy()
    env = pendulum()
    for source in (env, (env.observation_space, env.action_space)):
        agent = Agent(model, source)
        assert agent.codec.vocab == model.vocab and agent.codec.patch_size == model.patch_size
        obs, _ = env.reset(seed=0)
        assert env.action_space.contains(agent.act(obs))
    env.close()


def test_a_codec_of_another_vocabulary_is_refused(cartpole_task, tiny_policy):
    model = tiny_policy()
    codec = SpaceCodec(cartpole_task.env.observation_space, cartpole_task.env.action_space, Vocab())
    assert codec.vocab != model.vocab
    for source in (codec, Namespace(codec=codec)):  # a codec, or a task encoded for the default vocabulary
        with pytest.raises(VocabMismatchError, match=r"task\.encode_for\(policy\.vocab\)"):
            Agent(model, source)


def test_what_an_agent_cannot_act_in_is_named(tiny_policy):
    with pytest.raises(ValueError, match="not str"):
        Agent(tiny_policy(), "CartPole-v1")


def test_act_is_for_one_env_and_act_batch_for_the_envs_it_was_reset_for(cartpole_task, tiny_policy):
    model = tiny_policy()
    agent = Agent(model, cartpole_task.encode_for(model.vocab))
    envs = gym.vector.SyncVectorEnv([cartpole_task.make_env for _ in range(2)])
    obs, _ = envs.reset(seed=[0, 1])
    agent.reset(n_envs=2)
    with pytest.raises(ValueError, match="act_batch"):
        agent.act(obs[0])
    agent.reset(n_envs=3)
    with pytest.raises(ValueError, match="n_envs=2"):
        agent.act_batch(obs)
    with pytest.raises(ValueError, match="indices of the agent's 3 envs"):
        agent.keep_envs([0, 3])
    agent.keep_envs([0, 2])
    assert agent.act_batch(obs).shape == (2,)
    envs.close()


def test_a_windowed_agent_names_a_wrong_count_of_observations(babyai_task, tiny_policy):
    model = tiny_policy()
    agent = Agent(model, babyai_task.encode_for(model.vocab))
    assert agent._windowed
    envs = gym.vector.SyncVectorEnv([babyai_task.make_env for _ in range(2)])
    obs, _ = envs.reset(seed=[0, 1])
    agent.reset(n_envs=3)
    with pytest.raises(ValueError, match="n_envs=2"):
        agent.act_batch(obs)
    envs.close()


def test_the_readme_loop_runs(cartpole_task, tiny_policy, tmp_path, monkeypatch, session_minari_root):
    """The README's loop, word for word, on a tiny untrained checkpoint of the CartPole fixture."""
    tiny_policy().save_pretrained(tmp_path / "checkpoint", extra={"tasks.json": [cartpole_task.spec()]})
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(session_minari_root))  # where the fixture's dataset is
    monkeypatch.chdir(tmp_path)

    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import load_tasks

    policy = GatoPolicy.from_pretrained("checkpoint")
    task = load_tasks("checkpoint", policy.vocab)[0]  # the first task it was trained on; no dataset needed
    agent, env = Agent(policy, task), task.make_env()
    obs, _ = env.reset(seed=0)
    agent.reset()
    done = False
    while not done:
        obs, reward, terminated, truncated, _ = env.step(agent.act(obs))
        done = terminated or truncated
    assert env.action_space.contains(agent.act(obs))

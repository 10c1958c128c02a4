"""An expert for Box-action Gymnasium environments (InvertedPendulum-v5 first), trained here with PPO.

:func:`train_ppo_expert` trains stable-baselines3's PPO (default ``MlpPolicy``) once per machine
and keeps only its deterministic actor: the policy MLP and action head mapping an observation to
the mean action, the observation normalisation constants (when the env was trained under
``VecNormalize``) and the action bounds. They are written as a safetensors file with a JSON
metadata header under ``$GATO_CACHE_DIR`` (default ``~/.cache/neko-gato``), see
:func:`ppo_expert_path`. :class:`PPOExpert` rebuilds that actor in plain torch: playing the
expert needs neither stable-baselines3 nor unpickling anything.

Measured on InvertedPendulum-v5 (2 CPU cores): these settings reach the maximum return of 1000
after ~20k steps on every seed tried, so the default 30k steps leave a margin; training takes
about 15 s.
"""

from __future__ import annotations

import itertools
import json
import os
import pathlib
import random
import tempfile
import time

import gymnasium as gym
import numpy as np
import torch
from torch import nn

from gato.seeds import EVALUATION

__all__ = ["PPOExpert", "ppo_expert_path", "train_ppo_expert"]

FORMAT = "gato-ppo-actor/1"
"""``format`` entry of the file's metadata; bumped when the layout changes."""

# SB3's defaults except n_steps: 1024 instead of 2048 doubles the number of policy updates in a
# short budget, which took InvertedPendulum-v5 to 1000 by ~20k steps instead of ~30k.
_PPO_KWARGS = {"n_steps": 1024, "batch_size": 64, "n_epochs": 10, "learning_rate": 3e-4, "gamma": 0.99,
               "gae_lambda": 0.95, "clip_range": 0.2, "ent_coef": 0.0}
# Envs that learn well from raw observations. Anything else trains under VecNormalize (observations
# only are needed by the actor), as is usual for MuJoCo tasks whose observations span many scales.
_RAW_OBSERVATION_ENVS = ("InvertedPendulum-v4", "InvertedPendulum-v5")
_CLIP_OBS = 10.0  # VecNormalize's defaults, stored in the metadata so the actor repeats them
_NORM_EPSILON = 1e-8
_ACTIVATIONS = {"Tanh": nn.Tanh, "ReLU": nn.ReLU}
# How close the rebuilt actor must be to model.predict(deterministic=True): both run the same float32
# operations, so anything but rounding noise means the extracted structure is wrong.
_MATCH_ATOL = 1e-5
_EVAL_EPISODES = 5  # quick check of the saved actor, recorded in the metadata
_EVAL_SEED = EVALUATION.start  # the seeds policies are scored on, unseen in training


def _cache_root() -> pathlib.Path:
    root = os.environ.get("GATO_CACHE_DIR")
    return pathlib.Path(root).expanduser() if root else pathlib.Path.home() / ".cache" / "neko-gato"


def ppo_expert_path(env_id: str, timesteps: int, seed: int = 0) -> pathlib.Path:
    """Where the expert for ``env_id`` is cached.

    ``$GATO_CACHE_DIR`` (default ``~/.cache/neko-gato``) ``/experts/<env_id>-ppo-<timesteps>-s<seed>
    .safetensors``; a namespace separator in the id (``ALE/...``) becomes ``--``.
    """
    name = f"{env_id.replace('/', '--')}-ppo-{int(timesteps)}-s{int(seed)}.safetensors"
    return _cache_root() / "experts" / name


def _import_sb3():
    """stable-baselines3, or an error that says how to install it (it is an optional extra)."""
    try:
        import stable_baselines3
    except ImportError as err:
        from gato.data.recipes import MissingDependencyError

        raise MissingDependencyError(
            "training a PPO expert needs stable-baselines3, which is not installed: "
            'install the "experts" extra with  pip install -e ".[experts]"  '
            f"(or pip install stable-baselines3). Import error: {err}") from None
    return stable_baselines3


class _Actor(nn.Module):
    """Observation -> clipped mean action: optional normalisation, an MLP, clipping to the bounds."""

    def __init__(self, sizes: list[int], activation: str, low: torch.Tensor, high: torch.Tensor,
                 obs_mean: torch.Tensor | None = None, obs_var: torch.Tensor | None = None,
                 clip_obs: float = _CLIP_OBS, epsilon: float = _NORM_EPSILON):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"unsupported activation {activation!r}; known: {sorted(_ACTIVATIONS)}")
        layers: list[nn.Module] = []
        for i, (n_in, n_out) in enumerate(itertools.pairwise(sizes)):
            layers.append(nn.Linear(n_in, n_out))
            if i < len(sizes) - 2:  # the action head (last Linear) has no activation
                layers.append(_ACTIVATIONS[activation]())
        self.net = nn.Sequential(*layers)
        self.register_buffer("action_low", low.to(torch.float32))
        self.register_buffer("action_high", high.to(torch.float32))
        self.normalize = obs_mean is not None
        if self.normalize:
            # float64, like VecNormalize's running statistics, so normalising here rounds the same way.
            self.register_buffer("obs_mean", obs_mean.to(torch.float64))
            self.register_buffer("obs_var", obs_var.to(torch.float64))
        self.clip_obs, self.epsilon = float(clip_obs), float(epsilon)

    def forward(self, obs: torch.Tensor) -> torch.Tensor:
        """(N, obs_dim) raw observations -> (N, act_dim) float32 actions within the bounds."""
        if self.normalize:
            obs = obs.to(torch.float64)
            obs = ((obs - self.obs_mean) / torch.sqrt(self.obs_var + self.epsilon)).clamp(-self.clip_obs,
                                                                                          self.clip_obs)
        action = self.net(obs.to(torch.float32))
        return torch.maximum(torch.minimum(action, self.action_high), self.action_low)


def _extract_actor(model, vec_normalize) -> tuple[_Actor, dict[str, str]]:
    """The deterministic actor of a trained SB3 PPO model, checked to be what this module rebuilds."""
    from stable_baselines3.common.distributions import DiagGaussianDistribution
    from stable_baselines3.common.policies import ActorCriticPolicy
    from stable_baselines3.common.torch_layers import FlattenExtractor

    policy = model.policy
    # Anything else (gSDE, squashed outputs, image or dict extractors) has a different mean action.
    if not isinstance(policy, ActorCriticPolicy) or type(policy.action_dist) is not DiagGaussianDistribution:
        raise TypeError(f"expected an ActorCriticPolicy with a diagonal Gaussian, got {type(policy).__name__} "
                        f"with {type(policy.action_dist).__name__}")
    if policy.squash_output or not isinstance(policy.pi_features_extractor, FlattenExtractor):
        raise TypeError("expected unsquashed actions and a FlattenExtractor for the actor")
    activation = policy.activation_fn.__name__
    if activation not in _ACTIVATIONS:
        raise TypeError(f"unsupported activation {activation!r}")
    linears = []
    for module in policy.mlp_extractor.policy_net:
        if isinstance(module, nn.Linear):
            linears.append(module)
        elif not isinstance(module, policy.activation_fn):
            raise TypeError(f"unexpected layer {module!r} in mlp_extractor.policy_net")
    if not isinstance(policy.action_net, nn.Linear):
        raise TypeError(f"expected a Linear action_net, got {policy.action_net!r}")
    linears.append(policy.action_net)
    sizes = [linears[0].in_features] + [layer.out_features for layer in linears]

    space = policy.action_space
    stats = {}
    if vec_normalize is not None:
        rms = vec_normalize.obs_rms
        stats = {"obs_mean": torch.as_tensor(rms.mean), "obs_var": torch.as_tensor(rms.var),
                 "clip_obs": vec_normalize.clip_obs, "epsilon": vec_normalize.epsilon}
    actor = _Actor(sizes, activation, torch.as_tensor(space.low), torch.as_tensor(space.high), **stats)
    with torch.no_grad():
        for mine, theirs in zip((m for m in actor.net if isinstance(m, nn.Linear)), linears):
            mine.weight.copy_(theirs.weight.detach().cpu())
            mine.bias.copy_(theirs.bias.detach().cpu())
    meta = {"sizes": json.dumps(sizes), "activation": activation, "normalize": json.dumps(actor.normalize),
            "clip_obs": repr(actor.clip_obs), "epsilon": repr(actor.epsilon)}
    return actor.eval(), meta


def _collect_observations(env_id: str, act, n: int, seed: int) -> np.ndarray:
    """``n`` observations met when ``act`` plays ``env_id``: the first steps of several episodes."""
    env = gym.make(env_id)
    observations, episode = [], 0
    try:
        while len(observations) < n:
            obs, _ = env.reset(seed=seed + episode)
            episode += 1
            for _ in range(max(1, n // 4)):
                observations.append(np.asarray(obs, dtype=np.float32))
                obs, _, terminated, truncated, _ = env.step(act(obs))
                if terminated or truncated:
                    break
    finally:
        env.close()
    return np.stack(observations[:n])


def _evaluate(env_id: str, act, episodes: int, seed: int) -> list[float]:
    """Undiscounted returns of ``act`` over ``episodes`` episodes with seeds ``seed, seed+1, ...``."""
    env = gym.make(env_id)
    returns = []
    try:
        for i in range(episodes):
            obs, _ = env.reset(seed=seed + i)
            total, done = 0.0, False
            while not done:
                obs, reward, terminated, truncated, _ = env.step(act(obs))
                total += float(reward)
                done = terminated or truncated
            returns.append(total)
    finally:
        env.close()
    return returns


def _progress_callback(timesteps: int):
    """An SB3 callback driving a tqdm bar (SB3's own progress bar needs ``rich``)."""
    from stable_baselines3.common.callbacks import BaseCallback
    from tqdm.auto import tqdm

    class _Bar(BaseCallback):
        def _on_training_start(self) -> None:
            # PPO stops after the rollout that reaches ``timesteps``, so the bar counts whole rollouts.
            total = -(-timesteps // self.model.n_steps) * self.model.n_steps * self.model.n_envs
            self.bar = tqdm(total=total, desc="PPO expert", unit="step")

        def _on_step(self) -> bool:
            self.bar.update(self.model.num_timesteps - self.bar.n)
            return True

        def _on_training_end(self) -> None:
            self.bar.close()

    return _Bar()


def train_ppo_expert(env_id: str, timesteps: int = 30_000, seed: int = 0, progress: bool = False, *,
                     overwrite: bool = False) -> pathlib.Path:
    """Train SB3 PPO on ``env_id`` for ``timesteps`` steps and cache its deterministic actor.

    The actor (MLP weights, observation normalisation constants if any, action bounds) is checked
    against ``model.predict(obs, deterministic=True)`` before it is saved, then written atomically to
    :func:`ppo_expert_path` as safetensors with string metadata (``format``, ``env_id``, layer
    ``sizes``, ``activation``, training time, a short evaluation, ...). An existing file is kept
    (nothing is trained, stable-baselines3 is not needed) unless ``overwrite``. Torch's thread count
    and the global random states that SB3 seeds are restored afterwards. Returns the path.
    """
    path = ppo_expert_path(env_id, timesteps, seed)
    if path.exists() and not overwrite:
        return path
    sb3 = _import_sb3()
    from stable_baselines3.common.env_util import make_vec_env
    from stable_baselines3.common.vec_env import VecNormalize

    probe = gym.make(env_id)
    obs_space, act_space = probe.observation_space, probe.action_space
    probe.close()
    if not (isinstance(act_space, gym.spaces.Box) and isinstance(obs_space, gym.spaces.Box)
            and len(obs_space.shape) == 1):
        raise ValueError(f"{env_id}: the PPO expert needs flat Box observations and Box actions, got "
                         f"{obs_space} and {act_space}")

    threads = torch.get_num_threads()
    rng_states = random.getstate(), np.random.get_state(), torch.get_rng_state()
    # A 64-wide MLP on minibatches of 64: more threads only add synchronisation, and one thread
    # leaves the other cores to whatever else runs (workers, another training).
    torch.set_num_threads(1)
    try:
        venv = make_vec_env(env_id, n_envs=1, seed=seed)
        normalize = env_id not in _RAW_OBSERVATION_ENVS
        if normalize:
            venv = VecNormalize(venv, clip_obs=_CLIP_OBS, epsilon=_NORM_EPSILON)
        model = sb3.PPO("MlpPolicy", venv, seed=seed, device="cpu", verbose=0, **_PPO_KWARGS)
        start = time.perf_counter()
        model.learn(timesteps, callback=_progress_callback(timesteps) if progress else None)
        seconds = time.perf_counter() - start
        venv.close()

        vec_normalize = venv if normalize else None
        actor, meta = _extract_actor(model, vec_normalize)

        def sb3_act(obs):
            obs = np.asarray(obs, dtype=np.float32)
            if vec_normalize is not None:
                obs = vec_normalize.normalize_obs(obs)
            return model.predict(obs, deterministic=True)[0]

        def actor_act(obs):
            with torch.inference_mode():
                x = torch.as_tensor(np.asarray(obs, dtype=np.float32).reshape(-1, obs_space.shape[0]))
                return actor(x).numpy().reshape(np.shape(obs)[:-1] + act_space.shape)

        # Check the extraction on states the policy really visits, one batch through both.
        observations = _collect_observations(env_id, sb3_act, 64, seed + 12_345)
        expected, got = sb3_act(observations), actor_act(observations)
        if not np.allclose(got, expected, rtol=0.0, atol=_MATCH_ATOL):
            raise RuntimeError(f"{env_id}: the extracted actor disagrees with model.predict(deterministic=True) "
                               f"(max |diff| {np.abs(got - expected).max():.3g}); SB3's policy layout changed?")
        returns = _evaluate(env_id, actor_act, _EVAL_EPISODES, _EVAL_SEED)
    finally:
        torch.set_num_threads(threads)
        random.setstate(rng_states[0])
        np.random.set_state(rng_states[1])
        torch.set_rng_state(rng_states[2])

    meta.update({"format": FORMAT, "env_id": env_id, "timesteps": str(int(timesteps)), "seed": str(int(seed)),
                 "algorithm": "stable-baselines3 PPO MlpPolicy", "sb3_version": sb3.__version__,
                 "ppo_kwargs": json.dumps(_PPO_KWARGS), "train_seconds": f"{seconds:.1f}",
                 "eval_seeds": f"{_EVAL_SEED}..{_EVAL_SEED + _EVAL_EPISODES - 1}",
                 "eval_returns": json.dumps([round(r, 3) for r in returns]),
                 "eval_mean_return": f"{np.mean(returns):.3f}"})
    _save(actor, meta, path)
    return path


def _save(actor: _Actor, meta: dict[str, str], path: pathlib.Path) -> None:
    """Write the actor's tensors and ``meta`` to ``path`` via a temporary file, so readers never see half a file."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {name: t.detach().contiguous() for name, t in actor.state_dict().items()}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=meta)
        os.chmod(tmp, 0o644)  # mkstemp makes it private; the cache is meant to be shared like a download
        os.replace(tmp, path)
    except BaseException:
        pathlib.Path(tmp).unlink(missing_ok=True)
        raise


def _load(path: pathlib.Path) -> tuple[_Actor, dict[str, str]]:
    """The actor stored at ``path`` and its metadata (safetensors only: no pickle involved)."""
    from safetensors import safe_open

    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
        names = f.keys()  # a safe_open handle is not itself iterable
        tensors = {name: f.get_tensor(name) for name in names}
    if meta.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} file (format {meta.get('format')!r}); delete it to retrain")
    normalize = json.loads(meta["normalize"])
    actor = _Actor(json.loads(meta["sizes"]), meta["activation"], tensors["action_low"], tensors["action_high"],
                   obs_mean=tensors["obs_mean"] if normalize else None,
                   obs_var=tensors["obs_var"] if normalize else None,
                   clip_obs=float(meta["clip_obs"]), epsilon=float(meta["epsilon"]))
    actor.load_state_dict(tensors, strict=True)
    return actor.eval(), meta


class PPOExpert:
    """The cached PPO actor for ``env`` (trained first if missing), played deterministically.

    ``env.spec.id`` names the cache entry (:func:`ppo_expert_path` with ``timesteps`` and ``seed``).
    Loading needs only torch and safetensors; stable-baselines3 is imported only to train a missing
    expert. ``expert(obs)`` takes one observation, or a batch with a leading axis, and returns the
    mean action clipped to ``env.action_space``, as float32.
    """

    def __init__(self, env: gym.Env, timesteps: int = 30_000, seed: int = 0):
        if env.spec is None:
            raise ValueError("PPOExpert needs an env made by gym.make (its spec id names the cached expert)")
        obs_space, act_space = env.observation_space, env.action_space
        # ValueError, not TypeError: the command line reports a bad space in one line.
        if not isinstance(act_space, gym.spaces.Box):
            raise ValueError(f"PPOExpert needs a Box action space, got {act_space}")  # noqa: TRY004
        self.env = env
        self.env_id = env.spec.id
        self.path = ppo_expert_path(self.env_id, timesteps, seed)
        if not self.path.exists():
            train_ppo_expert(self.env_id, timesteps, seed)
        self.actor, self.metadata = _load(self.path)

        self._obs_shape, self._act_shape = tuple(obs_space.shape), tuple(act_space.shape)
        self._obs_dim = int(np.prod(self._obs_shape))
        sizes = json.loads(self.metadata["sizes"])
        low, high = act_space.low.astype(np.float32), act_space.high.astype(np.float32)
        # A cached file for the same id but another env version or configuration would act nonsensically.
        if (sizes[0] != self._obs_dim or sizes[-1] != int(np.prod(self._act_shape))
                or not np.array_equal(self.actor.action_low.numpy(), low.reshape(-1))
                or not np.array_equal(self.actor.action_high.numpy(), high.reshape(-1))):
            raise ValueError(f"{self.path} does not fit {self.env_id}: trained on observations of size {sizes[0]} "
                             f"and {sizes[-1]} actions, the env has {obs_space} and {act_space}")
        self._low, self._high = low, high

    def reset(self, seed: int | None = None) -> None:
        """Nothing to reset: the actor has no memory."""

    def __call__(self, obs) -> np.ndarray:
        """The deterministic action for ``obs`` (or a batch of them), float32 within the action bounds."""
        x = np.asarray(obs, dtype=np.float32)
        single = x.shape == self._obs_shape
        with torch.inference_mode():
            action = self.actor(torch.from_numpy(x.reshape(-1, self._obs_dim))).numpy()
        # Clip again in the env's own bounds and shape (the stored ones were checked equal).
        action = np.clip(action.reshape((-1, *self._act_shape)), self._low, self._high).astype(np.float32)
        return action[0] if single else action

"""Evaluation speed: env steps per second with the KV cache versus re-running the whole context.

What is measured
    ``ControlTask.evaluate(model, n, use_cache=..., n_envs=..., promptless_eval=False)`` (the
    real evaluation path: ``rollout``, whose ``gato.agent.Agent`` acts, as ``Agent(policy, ...)``
    does for a user) on BabyAI GoToLocal, for each context length and number of environments
    stepped together, once with the key/value cache (``use_cache=True``: each env step feeds
    only its new tokens) and once without (``use_cache=False``: every generated token re-runs
    the whole context from scratch, the way NEKO evaluates).

How
    * Data: ~200 BabyAI bot episodes, generated into a temporary folder (or read from
      ``--data_dir``). They only supply the prompts: evaluation is prompted, each round starts
      with the last timesteps of a dataset episode taking ``--prompt_len_proportion`` of the
      context (bot episodes are short, so the prompt is at most one episode).
    * Model: an UNTRAINED default-size GatoPolicy (embed 128, 4 layers, 4 heads) with
      ``context_len`` = the context measured. It rarely reaches the goal, so episodes run to
      the env's limit (64 steps) and the context fills and then slides (oldest tokens dropped)
      whenever prompt + 64 steps exceed it: the case the cache must handle. The JSON reports
      ``tokens_fed_per_episode`` and ``context_slides`` so you can see which case each row is.
      GoToLocal takes 12 tokens per timestep and its bot episodes are at most ~15 steps, so
      the prompt is <= 180 tokens: one episode feeds ~948 tokens, which slides at context 512
      but NOT at 1024. ``--max_episode_steps 128`` raises the env's limit (same env, same
      code path) so that context 1024 fills and slides too.
    * One round = ``n_envs`` episodes stepped together. Each configuration runs
      ``--cache_rounds`` cached rounds and ``--nocache_rounds`` uncached ones, interleaved
      in one process (cache, no-cache, cache, ...), all with the same seed, hence the same
      episodes and prompts. A one-episode cached warm-up runs first for each context.
    * env steps = sum of episode lengths (``mean_episode_len * episodes``); steps/s = env
      steps / wall-clock seconds of the ``evaluate`` calls (env stepping, encoding and the
      model included; on cuda the GPU is synchronised around each call).
    * ``speedup`` = cached steps/s / uncached steps/s. Target in the issue: >= 10x at
      context 1024.

Usage
    python benchmarks/rollout.py                 # contexts 512 1024, envs 1 16 (a few minutes on 2 CPU cores)
    python benchmarks/rollout.py --quick         # context 256, fewer episodes (< 1 min)
    python benchmarks/rollout.py --device cuda --contexts 1024 --envs 1 16 64
    python benchmarks/rollout.py --data_dir /tmp/minari   # reuse (or create) the dataset there

On a machine shared with other busy processes, pass ``--threads 1``: torch's default (one
thread per core) then waits on the other processes at every operator and can run 10x slower.

Progress goes to stderr; a single JSON object is printed on stdout at the end.
"""

from __future__ import annotations

import argparse
import sys
import time
from argparse import Namespace

import _common as C


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="context 256, 1 uncached round, 100 data episodes (< 2 min)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--contexts", type=int, nargs="+", default=None, help="context lengths (default 512 1024)")
    p.add_argument("--envs", type=int, nargs="+", default=None, help="envs stepped together (default 1 16)")
    p.add_argument("--cache_rounds", type=int, default=None, help="cached rounds of n_envs episodes (default 3)")
    p.add_argument("--nocache_rounds", type=int, default=None,
                   help="uncached rounds of n_envs episodes (default 2; quick 1)")
    p.add_argument("--max_episode_steps", type=int, default=None,
                   help="override the env's step limit (GoToLocal: 64) to make longer episodes fill bigger contexts")
    p.add_argument("--prompt_len_proportion", type=float, default=0.5,
                   help="share of the context the eval prompt may take")
    p.add_argument("--data_dir", default=None, help="MINARI_DATASETS_PATH to use (default: a temporary folder)")
    p.add_argument("--data_episodes", type=int, default=None, help="bot episodes to generate if missing (default 200)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0, help="model initialisation seed")
    args = p.parse_args(argv)
    quick = args.quick
    args.contexts = args.contexts or ([256] if quick else [512, 1024])
    args.envs = args.envs or [1, 16]
    args.cache_rounds = args.cache_rounds if args.cache_rounds is not None else 3
    args.nocache_rounds = args.nocache_rounds if args.nocache_rounds is not None else (1 if quick else 2)
    args.data_episodes = args.data_episodes or (100 if quick else 200)
    if args.cache_rounds < 1 or args.nocache_rounds < 1:
        p.error("--cache_rounds and --nocache_rounds must be at least 1")
    return args


def run_once(task, model, n_envs: int, use_cache: bool, device: str) -> dict:
    """One round: n_envs prompted episodes through ControlTask.evaluate, timed."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    t = {}
    with C.timed(device, t):
        metrics = task.evaluate(model, n_envs, use_cache=use_cache, n_envs=n_envs, promptless_eval=False)
    steps = metrics["mean_episode_len"] * metrics["episodes"]
    out = {"seconds": t["seconds"], "steps": steps, "episodes": metrics["episodes"],
           "mean_episode_len": metrics["mean_episode_len"], "mean_return": metrics["mean_return"]}
    if cuda:
        out["peak_mem_mb"] = torch.cuda.max_memory_allocated(torch.device(device)) / 2**20
    return out


def summarise(runs: list[dict]) -> dict:
    seconds = sum(r["seconds"] for r in runs)
    steps = sum(r["steps"] for r in runs)
    out = {
        "rounds": len(runs),
        "episodes": int(sum(r["episodes"] for r in runs)),
        "env_steps": int(round(steps)),
        "seconds": round(seconds, 3),
        "steps_per_s": round(steps / seconds, 2) if seconds > 0 else None,
        "mean_episode_len": round(sum(r["mean_episode_len"] * r["episodes"] for r in runs)
                                  / sum(r["episodes"] for r in runs), 2),
        "mean_return": round(sum(r["mean_return"] * r["episodes"] for r in runs)
                             / sum(r["episodes"] for r in runs), 4),
    }
    if "peak_mem_mb" in runs[0]:
        out["cuda_peak_mem_mb"] = round(max(r["peak_mem_mb"] for r in runs), 1)
    return out


def _prompt_len(task, codec, ctx: int) -> int:
    """Tokens in the evaluation prompt (what ControlTask.evaluate feeds before each round)."""
    import numpy as np

    make = task.eval_prompt(codec, np.random.default_rng(0), ctx)
    return int(make(1)["tokens"].shape[1])


def bench_context(ctx: int, args) -> list[dict]:
    import torch

    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.control_task import ControlTask

    env = None  # None: the env the dataset was recorded in
    if args.max_episode_steps:
        from gato.envs import make_env

        env = make_env(C.ENV_ID, max_steps=args.max_episode_steps)
    task = ControlTask(C.LEVEL, env, C.DATASET_ID, ctx, Namespace(patch_size=4),
                       training_prompt_len_proportion=args.prompt_len_proportion)
    torch.manual_seed(args.seed)
    model = GatoPolicy(device=args.device, context_len=ctx)  # untrained, default size
    codec = task.codec_for(model.vocab)
    S = codec.tokens_per_step
    prompt_tokens = _prompt_len(task, codec, ctx)
    C.log(f"context {ctx}: {S} tokens per timestep, prompt {prompt_tokens} tokens")

    C.log(f"context {ctx}: warm-up (1 cached episode)")
    run_once(task, model, 1, True, args.device)

    rows = []
    for n_envs in args.envs:
        runs = {True: [], False: []}
        for r in range(max(args.cache_rounds, args.nocache_rounds)):
            for use_cache, rounds in ((True, args.cache_rounds), (False, args.nocache_rounds)):
                if r < rounds:
                    res = run_once(task, model, n_envs, use_cache, args.device)
                    runs[use_cache].append(res)
                    rate = res["steps"] / res["seconds"]
                    C.log(f"context {ctx} envs {n_envs} {'cache   ' if use_cache else 'no-cache'} round {r + 1}: "
                          f"{res['steps']:.0f} steps in {res['seconds']:.2f}s = {rate:.1f} steps/s")
        cache, nocache = summarise(runs[True]), summarise(runs[False])
        mean_len = cache["mean_episode_len"]
        fed = prompt_tokens + mean_len * S
        rows.append({
            "context_len": ctx,
            "n_envs": n_envs,
            "tokens_per_timestep": S,
            "prompt_tokens": prompt_tokens,
            "tokens_fed_per_episode": round(fed, 1),
            "context_slides": bool(fed > ctx),
            "cache": cache,
            "no_cache": nocache,
            "speedup": round(cache["steps_per_s"] / nocache["steps_per_s"], 2),
            # Same seeds and prompts, deterministic actions: both paths should act alike
            # (up to float round-off flipping a near-tie argmax).
            "same_outcome": (cache["mean_episode_len"], cache["mean_return"])
            == (nocache["mean_episode_len"], nocache["mean_return"]),
        })
        C.log(f"context {ctx} envs {n_envs}: cache {cache['steps_per_s']} steps/s, no-cache "
              f"{nocache['steps_per_s']} steps/s, speedup {rows[-1]['speedup']}x")
    return rows


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.check_device(args.device)
    C.set_threads(args.threads)
    folder, created = C.use_data_dir(args.data_dir)
    started = time.time()
    # minigrid prints "Sampling rejected ..." on stdout while making levels: keep stdout for the JSON.
    try:
        with C.stdout_to_stderr():
            data = C.ensure_babyai(args.data_episodes)
            machine = C.machine_info(args.device)
            rows = []
            for ctx in args.contexts:
                rows += bench_context(ctx, args)
    finally:
        C.cleanup(folder, created)
    at_1024 = [r for r in rows if r["context_len"] == 1024]
    result = {
        "benchmark": "rollout",
        "what": "evaluation env steps/s, ControlTask.evaluate(use_cache=True) vs (use_cache=False) (the agent's "
                "cached and uncached paths), untrained default GatoPolicy, prompted BabyAI GoToLocal",
        "machine": machine,
        "settings": {
            "quick": args.quick, "contexts": args.contexts, "envs": args.envs,
            "cache_rounds": args.cache_rounds, "nocache_rounds": args.nocache_rounds,
            "prompt_len_proportion": args.prompt_len_proportion, "seed": args.seed,
            "max_episode_steps": args.max_episode_steps or "env default (64)",
            "model": {"embed_dim": 128, "layers": 4, "heads": 4, "trained": False},
            "dataset": data,
        },
        "results": rows,
        "target": {
            "speedup_at_1024_min": 10.0,
            "met": all(r["speedup"] >= 10.0 for r in at_1024) if at_1024 else None,
        },
        "wall_seconds": round(time.time() - started, 1),
    }
    result["machine"]["load_avg_at_end"] = C.machine_info(args.device).get("load_avg_1_5_15")
    C.emit(result)
    return result


if __name__ == "__main__":
    sys.exit(0 if main() else 1)

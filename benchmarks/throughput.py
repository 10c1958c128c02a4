"""Training throughput: tokens per second and peak memory of the real training step.

What is measured
    ``Trainer.train_step()`` (sample a batch from the task, forward, loss, backward, gradient
    clipping, AdamW step, LR schedule) of a trainer made by ``gato.training.run.build_trainer``
    from ``TrainingArgs``, on BabyAI GoToLocal bot data, for two model configurations:

    * small: embed 128, 4 layers, 4 heads, context 512, batch 16  (the default model)
    * large: embed 256, 4 layers, 8 heads, context 1024, batch 8

How
    * ``pad_seq=True``: every sequence is padded to the full context, so each step processes
      exactly batch x context positions whatever the data. BabyAI episodes are short (~5
      steps of 12 tokens), so most positions are padding: the JSON reports both
      ``positions_per_s`` (batch x context per step: the work the model does) and
      ``real_tokens_per_s`` (non-padding tokens, image patches included: what the trainer logs
      as tok_s). ``--prompt_ep_proportion`` prompts a share of the windows with another part of
      an episode, which raises the real-token count (NEKO uses 0.25; ``gato train`` defaults to 0).
    * ``--warmup`` steps are run untimed, then ``--steps`` steps are timed one by one (on cuda
      the GPU is synchronised around each step). Rates = totals / total timed seconds.
    * Memory: each configuration runs in a FRESH subprocess so that peaks do not mix. On CPU
      ``peak_rss_mb`` is the process peak resident set size (``resource.getrusage(RUSAGE_SELF)
      .ru_maxrss``: Python, torch, the dataset in memory and the training step together);
      ``rss_before_training_mb`` is the same figure after the trainer was built, before any
      step. On cuda ``cuda_peak_mem_mb`` is ``torch.cuda.max_memory_allocated`` over the timed
      steps (the peak RSS is reported as well).
    * Targets in the issue (small configuration, 2-core CPU): >= 5,000 tokens/s and peak memory
      under 2 GB. ``target`` in the JSON checks positions/s (the model's work; real tokens/s
      depends on the data) and the peak RSS.

Usage
    python benchmarks/throughput.py                    # both configs, 5 warm-up + 20 timed steps
    python benchmarks/throughput.py --quick            # 1 warm-up + 3 timed steps (< 2 min)
    python benchmarks/throughput.py --device cuda --mixed_precision bf16
    python benchmarks/throughput.py --configs small --mixed_precision no bf16 --threads 1   # both, side by side
    python benchmarks/throughput.py --configs small --steps 50 --threads 2
    python benchmarks/throughput.py --dropout 0        # no dropout: CPU SDPA keeps its fused kernel

On a machine shared with other busy processes, pass ``--threads 1`` (see rollout.py).
On cuda the trainer's device is accelerate's choice (``--device cuda`` = the first GPU).

Progress goes to stderr; a single JSON object is printed on stdout at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

import _common as C

CONFIGS = {
    "small": {"embed_dim": 128, "layers": 4, "heads": 4, "sequence_length": 512, "batch_size": 16},
    "large": {"embed_dim": 256, "layers": 4, "heads": 8, "sequence_length": 1024, "batch_size": 8},
}
CHILD_FLAG = "--_child"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="1 warm-up + 3 timed steps, 100 data episodes (< 2 min)")
    p.add_argument("--device", default="cpu", help="cpu or cuda[:N] (default cpu)")
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS), help="which configurations")
    p.add_argument("--warmup", type=int, default=None, help="untimed steps first (default 5; quick 1)")
    p.add_argument("--steps", type=int, default=None, help="timed steps (default 20; quick 3)")
    p.add_argument("--prompt_ep_proportion", type=float, default=0.0,
                   help="share of windows with a prompt (default 0)")
    p.add_argument("--pack_sequences", type=int, default=1,
                   help="1: pack several windows per row (the default training setting; rows are then mostly real "
                   "tokens), 0: one window per row")
    p.add_argument("--dropout", type=float, default=None,
                   help="model dropout (default: PolicyConfig's 0.0). Attention dropout > 0 makes CPU SDPA fall "
                        "back to its math kernel, which materialises every attention matrix")
    p.add_argument("--mixed_precision", nargs="+", default=["no"], choices=["no", "bf16", "fp16"],
                   help="accelerate mixed precision; several: each config once in each, one after the other, and "
                        "each one's speed against the first's (precision_speedup)")
    p.add_argument("--data_dir", default=None, help="MINARI_DATASETS_PATH to use (default: a temporary folder)")
    p.add_argument("--data_episodes", type=int, default=None, help="bot episodes to generate if missing (default 200)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--seed", type=int, default=0)
    args = p.parse_args(argv)
    args.warmup = args.warmup if args.warmup is not None else (1 if args.quick else 5)
    args.steps = args.steps if args.steps is not None else (3 if args.quick else 20)
    args.data_episodes = args.data_episodes or (100 if args.quick else 200)
    if args.steps < 1 or args.warmup < 0:
        p.error("--steps must be >= 1 and --warmup >= 0")
    return args


# -- child: one configuration in a fresh process ----------------------------------------

def peak_rss_mb() -> float:
    """Process peak resident set size in MiB (ru_maxrss is KiB on Linux, bytes on macOS)."""
    import resource

    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return rss / 2**20 if sys.platform == "darwin" else rss / 2**10


def run_config(spec: dict) -> dict:
    """Build the trainer for one configuration, warm up, time ``steps`` train steps."""
    import torch

    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    C.set_threads(spec["threads"])
    device = spec["device"]
    cfg = CONFIGS[spec["config"]]
    total_steps = spec["warmup"] + spec["steps"]
    extra = {} if spec["dropout"] is None else {"dropout": spec["dropout"]}
    targs = TrainingArgs(
        control_datasets=[C.DATASET_ID], **cfg, pad_seq=True, device=device,
        mixed_precision=spec["mixed_precision"], prompt_ep_proportion=spec["prompt_ep_proportion"],
        pack_sequences=bool(spec["pack_sequences"]),
        training_steps=total_steps, max_minutes=0.0, warmup_steps=1, seed=spec["seed"],
        save_model=False, save_dir=spec["save_dir"], exp_name="throughput-bench", **extra,
    )
    targs.validate()
    trainer = build_trainer(targs)
    policy = trainer.policy
    n_params = sum(p.numel() for p in policy.parameters())
    rss_before = peak_rss_mb()
    cuda = device.startswith("cuda")
    C.log(f"[{spec['config']}] {n_params / 1e6:.2f}M parameters on {trainer.accelerator.device}, "
          f"{torch.get_num_threads()} threads; warm-up {spec['warmup']} steps")
    for _ in range(spec["warmup"]):
        trainer.train_step()
    if cuda:
        torch.cuda.reset_peak_memory_stats(torch.device(device))
    times, real_tokens, losses = [], 0, []
    for i in range(spec["steps"]):
        t = {}
        with C.timed(device, t):
            out = trainer.train_step()
        times.append(t["seconds"])
        real_tokens += out["tokens"]
        losses.append(out["loss"])
        C.log(f"[{spec['config']}] step {i + 1}/{spec['steps']}: {t['seconds']:.3f}s, "
              f"{out['tokens']} real tokens, loss {out['loss']:.3f}")
    seconds = sum(times)
    positions = spec["steps"] * cfg["batch_size"] * cfg["sequence_length"]
    sorted_times = sorted(times)
    result = {
        "config": spec["config"],
        **cfg,
        "dropout": targs.dropout,
        "parameters": n_params,
        "timed_steps": spec["steps"],
        "warmup_steps": spec["warmup"],
        "seconds": round(seconds, 3),
        "step_seconds_median": round(sorted_times[len(times) // 2], 4),
        "step_seconds_min": round(sorted_times[0], 4),
        "positions_per_step": cfg["batch_size"] * cfg["sequence_length"],
        "positions_per_s": round(positions / seconds, 1),
        "real_tokens_per_step": round(real_tokens / spec["steps"], 1),
        "real_tokens_per_s": round(real_tokens / seconds, 1),
        "real_token_share": round(real_tokens / positions, 4),
        "loss_first_last": [round(losses[0], 4), round(losses[-1], 4)],
        "rss_before_training_mb": round(rss_before, 1),
        "peak_rss_mb": round(peak_rss_mb(), 1),
    }
    if cuda:
        result["cuda_peak_mem_mb"] = round(torch.cuda.max_memory_allocated(torch.device(device)) / 2**20, 1)
    return result


def child_main(spec_json: str) -> None:
    spec = json.loads(spec_json)
    with C.stdout_to_stderr():  # accelerate/minigrid chatter must not reach the JSON line
        result = run_config(spec)
    print(json.dumps(result), flush=True)


# -- parent: one subprocess per configuration -------------------------------------------

def spawn(config: str, precision: str, args, save_dir: str) -> dict:
    spec = {"config": config, "device": args.device, "warmup": args.warmup, "steps": args.steps,
            "prompt_ep_proportion": args.prompt_ep_proportion, "mixed_precision": precision,
            "pack_sequences": args.pack_sequences,
            "threads": args.threads, "seed": args.seed, "save_dir": save_dir, "dropout": args.dropout}
    C.log(f"running {config} ({precision}) in a fresh process: {CONFIGS[config]}")
    proc = subprocess.run([sys.executable, os.path.abspath(__file__), CHILD_FLAG, json.dumps(spec)],
                          stdout=subprocess.PIPE, stderr=None, text=True, env=os.environ.copy())
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    if proc.returncode != 0 or not lines:
        return {"config": config, "mixed_precision": precision,
                "error": f"subprocess exited with {proc.returncode} (see stderr)"}
    return {**json.loads(lines[-1]), "mixed_precision": precision}


def precision_speedups(rows: list[dict], precisions: list[str]) -> dict:
    """Per config and precision after the first: positions/s against the first precision's."""
    ok = {(r["config"], r["mixed_precision"]): r["positions_per_s"] for r in rows if "error" not in r}
    return {config: {p: round(ok[config, p] / ok[config, precisions[0]], 3) for p in precisions[1:]
                     if (config, p) in ok and (config, precisions[0]) in ok}
            for config in dict.fromkeys(r["config"] for r in rows)}


def main(argv=None) -> dict:
    args = parse_args(argv)
    C.check_device(args.device)
    C.set_threads(args.threads)
    folder, created = C.use_data_dir(args.data_dir)
    started = time.time()
    try:
        with C.stdout_to_stderr():
            data = C.ensure_babyai(args.data_episodes)
            machine = C.machine_info(args.device)
            rows = [spawn(config, precision, args, os.path.join(folder, "runs"))
                    for config in args.configs for precision in args.mixed_precision]
    finally:
        C.cleanup(folder, created)
    small = next((r for r in rows if r.get("config") == "small" and "error" not in r
                  and r["mixed_precision"] == args.mixed_precision[0]), None)
    target = {"config": "small", "real_tokens_per_s_min": 5000, "peak_memory_mb_max": 2048}
    if small is not None:
        peak = small.get("cuda_peak_mem_mb", small["peak_rss_mb"])
        target.update(real_tokens_per_s=small["real_tokens_per_s"], positions_per_s=small["positions_per_s"],
                      peak_memory_mb=peak, met=small["real_tokens_per_s"] >= 5000 and peak < 2048)
    result = {
        "benchmark": "throughput",
        "what": "Trainer.train_step (build_trainer, pad_seq=True) on BabyAI GoToLocal: positions/s "
                "(batch x context), real (non-pad) tokens/s, peak memory per config in a fresh process",
        "machine": machine,
        "settings": {
            "quick": args.quick, "configs": args.configs, "warmup": args.warmup, "steps": args.steps,
            "prompt_ep_proportion": args.prompt_ep_proportion, "mixed_precision": args.mixed_precision,
            "pack_sequences": args.pack_sequences,
            "dropout": args.dropout if args.dropout is not None else "TrainingArgs default",
            "seed": args.seed, "dataset": data,
            "memory": "cuda: torch.cuda.max_memory_allocated over the timed steps; cpu: process peak RSS "
                      "(ru_maxrss) of the config's own subprocess",
        },
        "results": rows,
        "precision_speedup": precision_speedups(rows, args.mixed_precision),
        "target": target,
        "wall_seconds": round(time.time() - started, 1),
    }
    result["machine"]["load_avg_at_end"] = C.machine_info(args.device).get("load_avg_1_5_15")
    C.emit(result)
    return result


if __name__ == "__main__":
    if len(sys.argv) == 3 and sys.argv[1] == CHILD_FLAG:
        child_main(sys.argv[2])
    else:
        result = main()
        sys.exit(1 if any("error" in r for r in result["results"]) else 0)

"""Scaling and resuming: training tokens/s and evaluation episodes/s on 1 and 2 processes, and a resumed run's
learning curve against an unbroken one's.

What is measured
    * Throughput: for each process count P, ``torch.distributed.run --nproc_per_node P`` starts P processes that
      build a trainer with ``gato.training.run.build_trainer`` (DDP through Accelerate; gloo on CPU), run
      ``--warmup`` untimed steps, then time ``--steps`` real ``Trainer.train_step`` calls (the global batch
      ``--batch_size`` split over the processes; the step ends with the clock shared as in ``gato train``) and one
      ``Trainer.evaluate`` of ``--eval_episodes`` BabyAI GoToLocal episodes split across the processes. Training
      tokens/s count the non-padding tokens of every process; each process gets cores / P torch threads, so both
      settings use the same cores. The process counts run one after the other in this one invocation; the JSON
      gives the 2-vs-1 ratios.
    * Resume: ``gato train`` (a small model, ``--resume_steps`` steps, loss logged every step, a state saved
      every 2 steps) run unbroken, and run again but SIGKILLed while writing its state past half-way, then
      ``gato train --resume``. The JSON gives both loss sequences' largest difference (0.0 means bitwise equal) and
      the PNG plots both curves.
    * Training throughput, DDP against FSDP (``--train_throughput``, alone): for each process count and each of
      ``--modes`` (``ddp``, ``fsdp``: ``gato train --fsdp``, torch FSDP2), ``--warmup`` untimed then ``--steps``
      timed training steps as above, one setting after the other in this invocation; one process is the plain
      unsharded run. The JSON lists tokens/s and seconds per step of every setting, and the ratio to the first.

    * Data size (``--data_sizes N ...``, instead of the two above): for each size, a BabyAI GoToLocal dataset of N
      episodes (made under ``--data_root`` if missing) and three fresh processes, one after the other: episodes in
      memory as before (``GATO_STORE_PATH=off``), the episode store built from nothing (cold), and opened
      once built (warm). Each reports seconds to build the task, resident memory after it (RSS, split into anonymous
      pages and pages of mapped files, which the page cache shares between processes; and the peak),
      ``sample_batch(16)`` milliseconds (median of 50 after 5 untimed), and seconds from the process's start to the
      end of its first training step. The JSON gives each store figure against the in-memory one, and each size's
      against the first size's; ``--data_modes`` picks the processes (at 1M episodes the in-memory one would need
      about 22 GB). ``--baseline_src DIR`` adds a fourth process first, "before": the same
      measurements with the ``gato`` package of DIR (e.g. ``git archive main | tar -x -C DIR``: the code before
      the store, whose sampling also recomputed per batch what grows with the data); with ``--baseline_store`` that
      code reads its own warm store (built first by an untimed process). ``--batches B`` starts every process's
      sampling with a long run: B batches, RSS read along (a memory-mapped store's file pages grow with the
      batches). ``--store_patches`` adds a warm store that keeps one-hot patches as bytes, not bits (the bytes a
      timestep takes on disk and the sampling time of each form; the JSON's ``stores``); with both, a last process
      samples B batches from three readings of the store in turns (a memory map of the bytes store, as before;
      ``FileRows`` over it; over the bits store), whose times the machine's load cannot favour one of
      (``interleaved_sampling``).
Usage
    python benchmarks/scaling.py                      # 1 and 2 processes, the resume check; PNG beside the JSON
    python benchmarks/scaling.py --processes 1 2 4 --device cuda   # on a multi-GPU machine
    python benchmarks/scaling.py --train_throughput --processes 1 2 --modes ddp fsdp   # 1 process, 2 DDP, 2 FSDP

    python benchmarks/scaling.py --data_sizes 10000 100000 --data_root .bench/data   # data larger than memory
    python benchmarks/scaling.py --data_sizes 10000 100000 1000000 --data_modes store_cold store_warm
    python benchmarks/scaling.py --data_sizes 10000 --batches 5000 --store_patches \
        --baseline_src DIR --baseline_store            # resident memory over a long run, store against store

Progress goes to stderr; a single JSON object is printed on stdout at the end.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import _common

MODEL = {"embed_dim": 128, "layers": 4, "heads": 4, "sequence_length": 256}
DATA_MODES = ("in_memory", "store_cold", "store_warm")
"""The data-size part's processes, in the order they run (store_cold builds the store store_warm opens)."""


def worker(flags: dict, steps: int, warmup: int, out: str) -> None:
    """One process of a throughput measurement (run under torch.distributed.run)."""
    import torch

    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    trainer = build_trainer(TrainingArgs(**flags))
    acc = trainer.accelerator
    device = str(acc.device)
    for _ in range(warmup):
        trainer.train_step()
    acc.wait_for_everyone()
    tokens = 0
    with _common.timed(device, timing := {}):
        for _ in range(steps):
            tokens += trainer.train_step()["tokens"]
            trainer._share_clock()
    total_tokens = int(acc.reduce(torch.tensor([tokens], dtype=torch.float64, device=acc.device), "sum").item())
    episodes, trainer.args.eval_episodes = trainer.args.eval_episodes, acc.num_processes
    trainer.evaluate()  # untimed warm-up: the first rollout pays for making envs and kernels
    trainer.args.eval_episodes = episodes
    acc.wait_for_everyone()
    with _common.timed(device, evaluation := {}):
        results = trainer.evaluate()
    if acc.is_main_process:
        task = next(iter(results.values()))
        Path(out).write_text(json.dumps({
            "processes": acc.num_processes, "torch_threads_per_process": torch.get_num_threads(),
            "rows_per_process": trainer.micro_batch_size(), "train_seconds": timing["seconds"],
            "train_tokens_per_s": total_tokens / timing["seconds"], "steps_per_s": steps / timing["seconds"],
            "eval_seconds": evaluation["seconds"], "eval_episodes_per_s": task["episodes"] / evaluation["seconds"],
            "eval_success_rate": task["success_rate"]}))
    trainer.close()


def _launch(processes: int, worker: str, flags: dict, args, data_dir: str, label: str) -> dict:
    """Run ``processes`` processes of this script's ``worker`` (``--worker`` or ``--train_worker``) under
    torch.distributed.run, the cores split between them on a CPU; their main process's JSON."""
    threads = max(1, (os.cpu_count() or 1) // processes) if args.device == "cpu" else 1
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MINARI_DATASETS_PATH": data_dir}
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        flags = {**flags, "save_dir": tmp}
        command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node",
                   str(processes), "--no_python", sys.executable, __file__, worker, json.dumps(flags),
                   "--steps", str(args.steps), "--warmup", str(args.warmup), "--out", str(out)]
        _common.log(f"{label}, {threads} thread(s) each ...")
        run = subprocess.run(command, env=env, capture_output=True, text=True)
        if run.returncode:
            raise SystemExit(f"{label} failed:\n{run.stderr[-4000:]}")
        return json.loads(out.read_text())


def throughput(processes: int, args, data_dir: str) -> dict:
    """Launch ``processes`` processes of :func:`worker`; their main process's JSON."""
    flags = {**MODEL, "batch_size": args.batch_size, "eval_episodes": args.eval_episodes, "eval_envs": 8,
             "training_steps": 10**9, "max_minutes": 0, "report_to": ["none"], "save_model": False,
             "device": args.device, "mixed_precision": args.mixed_precision, "exp_name": f"scaling-{processes}"}
    return _launch(processes, "--worker", flags, args, data_dir, f"{processes} process(es)")


def train_worker(flags: dict, steps: int, warmup: int, out: str) -> None:
    """One process of a training-throughput measurement (run under torch.distributed.run): the steps of
    ``gato train`` (``Trainer.train_step``, then the clock shared), nothing else."""
    import torch

    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    trainer = build_trainer(TrainingArgs(**flags))
    acc = trainer.accelerator
    for _ in range(warmup):
        trainer.train_step()
    acc.wait_for_everyone()
    tokens = 0
    with _common.timed(str(acc.device), timing := {}):
        for _ in range(steps):
            tokens += trainer.train_step()["tokens"]
            trainer._share_clock()
    total_tokens = int(acc.reduce(torch.tensor([tokens], dtype=torch.float64, device=acc.device), "sum").item())
    if acc.is_main_process:
        Path(out).write_text(json.dumps({
            "processes": acc.num_processes, "mode": "fsdp" if trainer.sharded else "ddp" if acc.num_processes > 1
            else "single", "torch_threads_per_process": torch.get_num_threads(),
            "rows_per_process": trainer.micro_batch_size(), "train_seconds": timing["seconds"],
            "train_tokens_per_s": total_tokens / timing["seconds"], "seconds_per_step": timing["seconds"] / steps}))
    trainer.close()


def train_throughput(processes: int, mode: str, args, data_dir: str) -> dict:
    """Launch ``processes`` processes of :func:`train_worker` in ``mode`` (ddp or fsdp); their main process's JSON."""
    flags = {**MODEL, "batch_size": args.batch_size, "training_steps": 10**9, "max_minutes": 0,
             "report_to": ["none"], "save_model": False, "device": args.device,
             "mixed_precision": args.mixed_precision, "exp_name": f"throughput-{processes}-{mode}",
             "fsdp": mode == "fsdp"}
    return _launch(processes, "--train_worker", flags, args, data_dir,
                   f"training throughput: {processes} process(es), {mode}")


def train_throughput_table(args, data_dir: str) -> dict:
    """Every setting of ``--processes`` x ``--modes`` (one process: once, unsharded), side by side."""
    settings = [(p, mode) for p in args.processes for mode in (["single"] if p == 1 else args.modes)]
    runs = [train_throughput(p, mode, args, data_dir) for p, mode in settings]
    base = runs[0]["train_tokens_per_s"]
    return {"runs": runs, "ratios_vs_first": [{"processes": r["processes"], "mode": r["mode"],
                                               "train_tokens_per_s": r["train_tokens_per_s"] / base} for r in runs]}


# Replaces gato.atomic.replace_dir in the killed run: SIGKILL at its KILL_AT-th directory swap (a state save).
KILLER = """
import os, signal, sys
import gato.atomic as atomic
real, calls = atomic.replace_dir, []
def replace_dir(new, target):
    calls.append(new)
    if len(calls) == int(os.environ["KILL_AT"]):
        os.kill(os.getpid(), signal.SIGKILL)
    real(new, target)
atomic.replace_dir = replace_dir
from gato.cli import main
sys.exit(main(sys.argv[1:]))
"""


def resume_check(steps: int, data_dir: str, png: Path) -> dict:
    """An unbroken run against one killed during a state save past half-way and resumed."""
    flags = ["--embed_dim", "64", "--layers", "2", "--heads", "2", "--batch_size", "8", "--training_steps", str(steps),
             "--max_minutes", "0", "--log_every", "1", "--log_eval_freq", str(steps), "--eval_episodes", "4",
             "--report_to", "none", "--device", "cpu", "--save_every_minutes", "0", "--save_every_steps", "2"]
    env = {**os.environ, "MINARI_DATASETS_PATH": data_dir, "PYTHONHASHSEED": "0"}
    with tempfile.TemporaryDirectory() as tmp:
        gato = [sys.executable, "-m", "gato.cli", "train", *flags, "--save_dir", tmp]
        _common.log(f"resume check: unbroken run of {steps} steps ...")
        subprocess.run([*gato, "--exp_name", "unbroken"], env=env, check=True, capture_output=True)
        kill_at = steps // 4 + 1  # saves come every 2 steps: killed while writing the state of step ~steps/2 + 2
        _common.log(f"resume check: killed at state save {kill_at}, then resumed ...")
        killed = subprocess.run([sys.executable, "-c", KILLER, "train", *flags, "--save_dir", tmp, "--exp_name",
                                 "killed"], env={**env, "KILL_AT": str(kill_at)}, capture_output=True, text=True)
        if killed.returncode != -signal.SIGKILL:
            raise SystemExit(f"the run to kill ended with {killed.returncode}:\n{killed.stderr[-3000:]}")
        state = json.loads((Path(tmp) / "killed" / "state" / "state.json").read_text())
        subprocess.run([sys.executable, "-m", "gato.cli", "train", "--resume", str(Path(tmp) / "killed")], env=env,
                       check=True, capture_output=True)
        curves = {name: [(h["step"], h["loss"]) for h in json.loads(
            (Path(tmp) / name / "checkpoint" / "history.json").read_text()) if "loss" in h]
            for name in ("unbroken", "killed")}
    _plot(curves, state["step"], png)
    a, b = curves["unbroken"], curves["killed"]
    return {"steps": steps, "killed_after_step": state["step"], "resumed_from_step": state["step"],
            "same_steps_logged": [s for s, _ in a] == [s for s, _ in b],
            "max_abs_loss_difference": max(abs(x - y) for (_, x), (_, y) in zip(a, b)), "png": str(png)}


def _plot(curves: dict, resumed_at: int, png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for (name, points), style in zip(curves.items(), [dict(lw=4, alpha=0.4), dict(lw=1.2, ls="--")]):
        label = "unbroken" if name == "unbroken" else "killed, resumed"
        ax.plot([s for s, _ in points], [v for _, v in points], label=label, **style)
    ax.axvline(resumed_at, color="grey", lw=0.8)
    ax.text(resumed_at, ax.get_ylim()[1], f" resumed from step {resumed_at}", va="top", fontsize=8)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(png, dpi=120)
    plt.close(fig)


# -- data size: episodes in memory against the memory-mapped store ----------------------------------------------


def _memory_now() -> dict:
    """This process's resident memory in MB (/proc/self/status): all, anonymous, mapped files, peak."""
    fields = {}
    for line in Path("/proc/self/status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key in ("VmRSS", "RssAnon", "RssFile", "VmHWM"):
            fields[key] = int(value.split()[0]) / 1024
    return {"rss_mb": fields["VmRSS"], "anon_mb": fields["RssAnon"], "file_mb": fields["RssFile"],
            "peak_mb": fields["VmHWM"]}


def data_worker(out: str, samples: int = 50, batches: int = 0) -> None:
    """One process of the data-size part: build the GoToLocal task, time sample_batch(16), take a training step.
    With ``batches``, first a long run: ``batches`` sample_batch(16) calls, resident memory read along it (see
    :func:`long_sampling`)."""
    import numpy as np
    import psutil

    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_tasks, build_trainer

    started = psutil.Process().create_time()  # the process's start: interpreter and imports count
    if os.environ.get("BENCH_STORE_IMAGES") == "patches":  # one-hot patches kept as bytes, not bits (as before)
        from gato.data import episode_store

        episode_store.PACK_BITS = False
    args = TrainingArgs(control_datasets=[_common.DATASET_ID], **MODEL, batch_size=16, training_steps=10**9,
                        max_minutes=0, report_to=["none"], save_model=False, device="cpu", save_dir=tempfile.mkdtemp(),
                        exp_name="data-scaling")
    begin = time.perf_counter()
    tasks = build_tasks(args)
    task_seconds = time.perf_counter() - begin
    after_task = _memory_now()
    task = tasks[0]
    rng = np.random.default_rng(0)
    long_run = long_sampling(task, batches, rng) if batches else None  # first: RSS from the first batch on
    for _ in range(5):
        task.sample_batch(16, task.codec.vocab, rng=rng)
    times = []
    for _ in range(samples):
        tick = time.perf_counter()
        task.sample_batch(16, task.codec.vocab, rng=rng)
        times.append(time.perf_counter() - tick)
    trainer = build_trainer(args, tasks=tasks)
    trainer.train_step()
    first_step = time.time() - started
    store = getattr(task, "store", None)  # None also in code from before the store (--baseline_src)
    path = getattr(store, "path", None)
    meta = json.loads((path / "meta.json").read_text()) if path is not None else {}
    Path(out).write_text(json.dumps({
        "episodes": int(len(task.episodes.lengths)), "timesteps": int(task.episodes.starts[-1]),
        "gato": list(sys.modules["gato"].__path__)[0],
        "stored": store is not None, "store_built": bool(store is not None and store.built),
        "store_reads": type(task.episodes.steps).__name__,
        "store_images": [i["form"] if isinstance(i, dict) else i  # the code before the bits kept patches
                         for i in meta.get("images", ["patches"] * bool(store))],
        "store_mb": sum(f.stat().st_size for f in path.iterdir()) / 2**20 if path is not None else None,
        "task_seconds": task_seconds, "memory_after_task": after_task, "memory_after_first_step": _memory_now(),
        "sample_batch_16_ms": 1000 * float(np.median(times)), "seconds_to_first_step": first_step,
        **({"long_sampling": long_run} if long_run else {})}))


def long_sampling(task, batches: int, rng) -> dict:
    """``batches`` sample_batch(16) calls one after the other, as a long training run makes them: resident memory
    (all, anonymous, mapped files) before the first and after 1, 2, 5, 10, 20, 50, ... and the last; median and
    mean milliseconds per batch (and the median of this thread's CPU time)."""
    import numpy as np

    marks = {m * 10**e for e in range(9) for m in (1, 2, 5)} | {batches}
    memory, times, cpu = [{"batches": 0, **_memory_now()}], np.empty(batches), np.empty(batches)
    for i in range(batches):
        tick, tock = time.perf_counter(), time.thread_time()
        task.sample_batch(16, task.codec.vocab, rng=rng)
        times[i], cpu[i] = time.perf_counter() - tick, time.thread_time() - tock
        if i + 1 in marks:
            memory.append({"batches": i + 1, **_memory_now()})
    first, last = memory[0], memory[-1]
    return {"batches": batches, "sample_batch_16_ms_median": 1000 * float(np.median(times)),
            "sample_batch_16_ms_mean": 1000 * float(times.mean()),
            "sample_batch_16_cpu_ms_median": 1000 * float(np.median(cpu)), "memory": memory,
            "rss_growth_mb": last["rss_mb"] - first["rss_mb"], "file_growth_mb": last["file_mb"] - first["file_mb"],
            "anon_growth_mb": last["anon_mb"] - first["anon_mb"]}


def interleaved_worker(out: str, batches: int, bits_root: str, bytes_root: str) -> None:
    """Sampling time of three ways of reading one store, in turns, so that the load of a busy machine falls on all
    three alike: a memory map of the bytes store (the read path before ``FileRows``: ``mmap`` advised
    ``MADV_RANDOM``, arrays over it), ``FileRows`` over the bytes store, and over the bits store. Each way draws
    ``batches`` sample_batch(16) with its own generator of the same seed, so the three draw the same windows.
    Wall-clock and CPU (this thread's user and system) time per batch: on a shared machine the CPU time leaves out
    the time the process waited for a core."""
    import mmap

    import numpy as np

    from gato.data.episodes import EncodedEpisodes
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_tasks

    args = TrainingArgs(control_datasets=[_common.DATASET_ID], **MODEL, batch_size=16, training_steps=10**9,
                        max_minutes=0, report_to=["none"], save_model=False, device="cpu", save_dir=tempfile.mkdtemp(),
                        exp_name="data-scaling")
    tasks = {}
    for name, root in (("pread_bits", bits_root), ("pread_bytes", bytes_root)):
        os.environ["GATO_STORE_PATH"] = root
        tasks[name] = build_tasks(args)[0]
        if tasks[name].store.built:
            raise SystemExit(f"the {name} store was not built before the interleaved run")

    def mapped(path: Path) -> np.ndarray:
        with open(path, "rb") as f:
            version = np.lib.format.read_magic(f)
            read = np.lib.format.read_array_header_1_0 if version == (1, 0) else np.lib.format.read_array_header_2_0
            shape, _, dtype = read(f)
            offset = f.tell()
            buffer = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ)
        buffer.madvise(mmap.MADV_RANDOM)
        return np.ndarray(shape, dtype, buffer=buffer, offset=offset)

    stored = tasks["pread_bytes"]
    episodes = stored.episodes
    meta = json.loads((stored.store.path / "meta.json").read_text())
    if [i["form"] for i in meta["images"]] != ["patches"]:
        raise SystemExit(f"the bytes store keeps {meta['images']}")
    tasks["mmap_bytes"] = copy = build_tasks(args)[0]  # the bytes store again, its rows then mapped instead
    copy.episodes = EncodedEpisodes(steps=mapped(stored.store.path / "steps.npy"),
                                    patches=mapped(stored.store.path / "image-0.npy"), starts=episodes.starts,
                                    returns=episodes.returns)
    order = ["mmap_bytes", "pread_bytes", "pread_bits"]
    rngs = {name: np.random.default_rng(0) for name in order}
    times = {name: np.empty(batches) for name in order}
    cpu = {name: np.empty(batches) for name in order}
    for i in range(-20, batches):  # 20 untimed rounds first; each round starts with the next way (no way always first)
        for name in order[i % 3:] + order[: i % 3]:
            tick, tock = time.perf_counter(), time.thread_time()
            tasks[name].sample_batch(16, tasks[name].codec.vocab, rng=rngs[name])
            if i >= 0:
                times[name][i], cpu[name][i] = time.perf_counter() - tick, time.thread_time() - tock
    last = {name: tasks[name].sample_batch(16, tasks[name].codec.vocab, rng=rngs[name]) for name in order}
    same = all(last[name].patches.tobytes() == last["mmap_bytes"].patches.tobytes() and
               last[name].tokens.tobytes() == last["mmap_bytes"].tokens.tobytes() for name in order)
    base, base_cpu = float(np.median(times["mmap_bytes"])), float(np.median(cpu["mmap_bytes"]))
    Path(out).write_text(json.dumps({"batches": batches, "same_batches": same, **{name: {
        "sample_batch_16_ms_median": 1000 * float(np.median(times[name])),
        "sample_batch_16_ms_mean": 1000 * float(times[name].mean()),
        "sample_batch_16_cpu_ms_median": 1000 * float(np.median(cpu[name])),
        "sample_batch_16_cpu_ms_mean": 1000 * float(cpu[name].mean()),
        "median_vs_mmap_bytes": float(np.median(times[name])) / base,
        "cpu_median_vs_mmap_bytes": float(np.median(cpu[name])) / base_cpu} for name in order}}))


def data_size_run(episodes: int, args) -> dict:
    """The processes of one data size (see the module docstring)."""
    folder = Path(args.data_root).resolve() / f"gotolocal-{episodes}"
    stores = Path(args.data_root).resolve() / f"stores-{episodes}"
    env = {**os.environ, "MINARI_DATASETS_PATH": str(folder), "OMP_NUM_THREADS": "1"}
    subprocess.run([sys.executable, __file__, "--make_data", str(episodes)], env=env, check=True)
    modes = (["before"] if args.baseline_src else []) + [m for m in DATA_MODES
                                                          if m in args.data_modes or m == "store_warm"]
    if args.store_patches:
        modes.append("store_patches")
    runs = {}
    for mode in modes:
        where, extra = str(stores), {}
        if mode == "before":
            where = str(stores) + "-before" if args.baseline_store else "off"
            extra = {"PYTHONPATH": str(Path(args.baseline_src).resolve())}
        elif mode == "in_memory":
            where = "off"
        elif mode == "store_cold":
            shutil.rmtree(stores, ignore_errors=True)
        elif mode == "store_patches":
            where, extra = str(stores) + "-patches", {"BENCH_STORE_IMAGES": "patches"}
        if mode in ("before", "store_patches") and where != "off":
            _common.log(f"{episodes} episodes: {mode}, its store built first (untimed) ...")
            _data_process(args, {**env, "GATO_STORE_PATH": where, **extra}, f"{mode} (build)", episodes, 0)
        _common.log(f"{episodes} episodes: {mode} ...")
        runs[mode] = _data_process(args, {**env, "GATO_STORE_PATH": where, **extra}, mode, episodes, args.batches)
        _common.log(f"  {runs[mode]}")
    if ("store_cold" in runs and not runs["store_cold"]["store_built"]) or runs["store_warm"]["store_built"]:
        raise SystemExit("the cold run did not build the store, or the warm run built it again")
    interleaved = None
    if args.store_patches and args.batches:
        _common.log(f"{episodes} episodes: interleaved sampling ...")
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "result.json"
            run = subprocess.run([sys.executable, __file__, "--interleaved_worker", str(stores),
                                  str(stores) + "-patches", "--out", str(out), "--batches", str(args.batches)],
                                 capture_output=True, text=True, env=env)
            if run.returncode:
                raise SystemExit(f"interleaved sampling at {episodes} episodes failed:\n{run.stderr[-4000:]}")
            interleaved = json.loads(out.read_text())
        _common.log(f"  {interleaved}")
    store_files = sum(f.stat().st_size for f in stores.rglob("*") if f.is_file())
    steps = runs["store_warm"]["timesteps"]
    stored = {mode: {"store_mb": run["store_mb"], "bytes_per_timestep": run["store_mb"] * 2**20 / steps,
                     "images": run["store_images"], "reads": run["store_reads"]}
              for mode, run in runs.items() if run["stored"]}
    return {"episodes": episodes, "timesteps": steps, "store_mb_on_disk": store_files / 2**20, "stores": stored,
            **({"interleaved_sampling": interleaved} if interleaved else {}),
            "runs": runs,
            **({"store_warm_vs_in_memory": _ratios(runs["store_warm"], runs["in_memory"], with_task=True)}
               if "in_memory" in runs else {}),
            **({"store_warm_vs_before": _ratios(runs["store_warm"], runs["before"], with_task=True)}
               if "before" in runs else {})}


def _data_process(args, env: dict, mode: str, episodes: int, batches: int) -> dict:
    """One fresh :func:`data_worker` process; its JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "result.json"
        run = subprocess.run([sys.executable, __file__, "--data_worker", "--out", str(out), "--batches", str(batches)],
                             capture_output=True, text=True, env=env)
        if run.returncode:
            raise SystemExit(f"{mode} at {episodes} episodes failed:\n{run.stderr[-4000:]}")
        return json.loads(out.read_text())


def _ratios(run: dict, base: dict, with_task: bool = False) -> dict:
    """``run``'s figures over ``base``'s: resident memory after the task, sampling, first step (and task build)."""
    keys = ["sample_batch_16_ms", "seconds_to_first_step"] + (["task_seconds"] if with_task else [])
    long = {}
    if "long_sampling" in run and "long_sampling" in base:
        a, b = run["long_sampling"], base["long_sampling"]
        long = {"long_sampling_ms_median": a["sample_batch_16_ms_median"] / b["sample_batch_16_ms_median"],
                "rss_after_long_sampling": a["memory"][-1]["rss_mb"] / b["memory"][-1]["rss_mb"]}
    return {"rss_after_task": run["memory_after_task"]["rss_mb"] / base["memory_after_task"]["rss_mb"],
            **{k: run[k] / base[k] for k in keys}, **long}


def data_sizes(args) -> dict:
    """The data-size part for every size in ``args.data_sizes``, with each size's figures against the first's."""
    sizes = [data_size_run(n, args) for n in args.data_sizes]
    base = sizes[0]["runs"]
    ratios = []
    for size in sizes:
        row = {"episodes": size["episodes"]}
        for mode, run in size["runs"].items():
            if mode in base:
                row[mode] = _ratios(run, base[mode])
        ratios.append(row)
    return {"sizes": sizes, "ratios_vs_first_size": ratios}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch_size", type=int, default=32, help="global batch (split over the processes)")
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--warmup", type=int, default=3)
    parser.add_argument("--eval_episodes", type=int, default=64)
    parser.add_argument("--resume_steps", type=int, default=24)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--mixed_precision", default="no")
    parser.add_argument("--data_dir", default=None, help="Minari folder (default: a temporary one)")
    parser.add_argument("--png", default="benchmarks/results/scaling_resume_curve.png")
    parser.add_argument("--train_throughput", action="store_true",
                        help="only the training throughput of every --processes x --modes setting")
    parser.add_argument("--modes", nargs="+", default=["ddp", "fsdp"], choices=["ddp", "fsdp"],
                        help="with --train_throughput: how several processes train")
    parser.add_argument("--episodes", type=int, default=1000, help="GoToLocal episodes generated if none exist")

    parser.add_argument("--data_sizes", type=int, nargs="+", default=None,
                        help="instead of the process runs: GoToLocal episodes in memory vs the episode store, per size")
    parser.add_argument("--data_root", default=".bench/data",
                        help="folder of the data-size part's datasets (gotolocal-N) and stores (stores-N)")
    parser.add_argument("--baseline_src", default=None,
                        help="data-size part: also measure the gato package of this folder (the code before)")
    parser.add_argument("--baseline_store", action="store_true",
                        help="data-size part: the code of --baseline_src reads its own store (built first, untimed), "
                             "not episodes in memory")
    parser.add_argument("--batches", type=int, default=0,
                        help="data-size part: each process also samples this many batches, resident memory read along")
    parser.add_argument("--data_modes", nargs="+", default=list(DATA_MODES), choices=DATA_MODES,
                        help="data-size part: which processes run (store_warm always; in_memory holds every episode "
                             "in memory, about 22 GB at 1M GoToLocal episodes: leave it out there)")
    parser.add_argument("--store_patches", action="store_true",
                        help="data-size part: also a warm store that keeps one-hot patches as bytes (not bits)")
    parser.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--train_worker", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--out", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--data_worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--interleaved_worker", nargs=2, default=None, help=argparse.SUPPRESS)
    parser.add_argument("--make_data", type=int, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.data_worker:
        with _common.stdout_to_stderr():
            data_worker(args.out, batches=args.batches)
        return
    if args.interleaved_worker:
        with _common.stdout_to_stderr():
            interleaved_worker(args.out, args.batches, *args.interleaved_worker)
        return
    if args.make_data:
        with _common.stdout_to_stderr():
            _common.ensure_babyai(args.make_data)
        return
    if args.data_sizes:
        start = time.time()
        result = data_sizes(args)
        _common.emit({"benchmark": "scaling-data", "machine": _common.machine_info("cpu"), "model": MODEL,
                      **result, "seconds": time.time() - start})
        return
    if args.worker:
        with _common.stdout_to_stderr():
            worker(json.loads(args.worker), args.steps, args.warmup, args.out)
        return
    if args.train_worker:
        with _common.stdout_to_stderr():
            train_worker(json.loads(args.train_worker), args.steps, args.warmup, args.out)
        return
    _common.check_device(args.device)
    folder, created = _common.use_data_dir(args.data_dir)
    try:
        with _common.stdout_to_stderr():
            data = _common.ensure_babyai(args.episodes)
            start = time.time()
            if args.train_throughput:
                table = train_throughput_table(args, folder)
            else:
                runs = [throughput(p, args, folder) for p in args.processes]
                resume = resume_check(args.resume_steps, folder, Path(args.png))
    finally:
        _common.cleanup(folder, created)
    if args.train_throughput:
        _common.emit({"benchmark": "scaling/train_throughput", "machine": _common.machine_info(args.device),
                      "data": data, "model": MODEL, "global_batch": args.batch_size, "timed_steps": args.steps,
                      **table, "seconds": time.time() - start})
        return
    base = runs[0]
    _common.emit({
        "benchmark": "scaling", "machine": _common.machine_info(args.device), "data": data,
        "model": MODEL, "global_batch": args.batch_size, "timed_steps": args.steps, "runs": runs,
        "ratios_vs_first": [{"processes": r["processes"],
                             "train_tokens_per_s": r["train_tokens_per_s"] / base["train_tokens_per_s"],
                             "eval_episodes_per_s": r["eval_episodes_per_s"] / base["eval_episodes_per_s"]}
                            for r in runs],
        "resume": resume, "seconds": time.time() - start,
    })


if __name__ == "__main__":
    main()

"""Helpers shared by the benchmark scripts: the BabyAI dataset, the machine record, timing.

The scripts import this module as ``_common`` (they are run as ``python benchmarks/X.py``, so
their own folder is on ``sys.path``). Nothing here imports minari or gato at module level:
``use_data_dir`` must set ``MINARI_DATASETS_PATH`` before any minari-using code runs.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from contextlib import contextmanager, redirect_stdout

DATASET_ID = "babyai/GoToLocal-bot-v0"
LEVEL = "GoToLocal"
ENV_ID = "BabyAI-GoToLocal-v0"


def log(*parts) -> None:
    """Progress and info go to stderr; stdout holds only the final JSON."""
    print(*parts, file=sys.stderr, flush=True)


def use_data_dir(data_dir: str | None) -> tuple[str, bool]:
    """Point ``MINARI_DATASETS_PATH`` at ``data_dir`` (or a new temporary folder).

    Returns (folder, created): ``created`` is True when the folder is a temporary one that the
    caller should delete at the end (see :func:`cleanup`).
    """
    created = data_dir is None
    folder = tempfile.mkdtemp(prefix="gato-bench-minari-") if created else os.path.abspath(data_dir)
    os.makedirs(folder, exist_ok=True)
    os.environ["MINARI_DATASETS_PATH"] = folder
    return folder, created


def ensure_babyai(episodes: int, workers: int = 2) -> dict:
    """Generate the BabyAI GoToLocal bot dataset in ``$MINARI_DATASETS_PATH`` unless it is there.

    ``generate_babyai`` spawns worker processes: call this from under
    ``if __name__ == "__main__":`` only.
    """
    from gato.data.writer import local_dataset_exists

    if local_dataset_exists(DATASET_ID):
        log(f"using existing {DATASET_ID} in {os.environ['MINARI_DATASETS_PATH']}")
        return {"dataset_id": DATASET_ID, "generated": False}
    from gato.data.babyai import generate_babyai

    log(f"generating {episodes} {LEVEL} bot episodes into {os.environ['MINARI_DATASETS_PATH']} ...")
    report = generate_babyai(LEVEL, episodes, dataset_id=DATASET_ID, workers=workers,
                             reference_episodes=20, progress=False)
    if report.episodes_written == 0:
        raise RuntimeError(f"the BabyAI bot wrote no episodes ({dict(report.skip_reasons)})")
    log(f"wrote {report.episodes_written} episodes in {report.seconds:.1f}s")
    return {"dataset_id": DATASET_ID, "generated": True, "episodes": report.episodes_written}


def cleanup(folder: str, created: bool) -> None:
    """Remove the temporary dataset folder made by :func:`use_data_dir`."""
    if created:
        shutil.rmtree(folder, ignore_errors=True)


def set_threads(threads: int | None) -> None:
    """``torch.set_num_threads(threads)`` when given (0 or None: keep torch's default).

    On a machine shared with other busy processes, fewer threads than cores is often much
    faster: oversubscribed intra-op threads wait on each other at every operator.
    """
    import torch

    if threads:
        torch.set_num_threads(threads)


def machine_info(device: str) -> dict:
    """What the numbers were measured on."""
    import torch

    from gato.training.run import cpu_has_bf16, read_cpuinfo

    cpuinfo = read_cpuinfo()
    info = {
        "processor": platform.processor() or platform.machine(),
        "cpu_model": cpu_model(cpuinfo),
        "cpu_bf16": cpu_has_bf16(cpuinfo),  # bf16 autocast is fast only with these instructions
        "platform": platform.platform(),
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "device": device,
    }
    if hasattr(os, "getloadavg"):
        info["load_avg_1_5_15"] = [round(x, 2) for x in os.getloadavg()]
    if device.startswith("cuda"):
        info["cuda_device"] = torch.cuda.get_device_name(torch.device(device))
        info["cuda_version"] = torch.version.cuda
    return info


def cpu_model(cpuinfo: str | None) -> str | None:
    """The CPU's model name in the text of /proc/cpuinfo (None without one): two machines of the same platform
    string can differ in what they compute fast."""
    return next((line.split(":", 1)[1].strip() for line in (cpuinfo or "").splitlines()
                 if line.startswith("model name")), None)


def sync(device: str) -> None:
    """Wait for queued GPU work, so that wall-clock timings are whole."""
    if device.startswith("cuda"):
        import torch

        torch.cuda.synchronize(torch.device(device))


@contextmanager
def timed(device: str, out: dict, key: str = "seconds"):
    """``with timed(device, d): ...`` stores the block's wall-clock seconds in ``d[key]``,
    synchronising the GPU before and after on cuda."""
    sync(device)
    start = time.perf_counter()
    try:
        yield out
    finally:
        sync(device)
        out[key] = time.perf_counter() - start


def check_device(device: str) -> None:
    """Fail early, with a clear message, on a device that torch cannot use."""
    import torch

    if device.startswith("cuda") and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: torch {torch.__version__} sees no CUDA device")


@contextmanager
def stdout_to_stderr():
    """Send whatever is printed on stdout inside the block to stderr (minigrid prints
    "Sampling rejected ..." while making levels), so that stdout holds only the JSON."""
    with redirect_stdout(sys.stderr):
        yield


def emit(result: dict) -> None:
    """Print the final JSON object on stdout."""
    print(json.dumps(result, indent=2), flush=True)


def carry_over(record: dict, out, resume: bool, key: str) -> None:
    """On ``--resume``, keep ``key`` (what was measured before the kill) and the start time from the JSON ``out``
    that the killed run wrote, and add this resumption's time to ``record["resumed"]``."""
    from pathlib import Path

    out = Path(out)
    if resume and out.is_file():
        before = json.loads(out.read_text())
        record.update({key: before.get(key, record[key])}, started=before.get("started"),
                      resumed=[*before.get("resumed", []), time.strftime("%Y-%m-%d %H:%M:%S")])


def has_saved_state(train_args) -> bool:
    """Whether the run of ``train_args`` saved a training state to continue from."""
    from pathlib import Path

    from gato.training.state import ResumeError, state_dir

    try:
        state_dir(Path(train_args.save_dir) / train_args.exp_name)
    except (ResumeError, OSError):
        return False
    return True


def resume_from(train_args, resume: bool):
    """The run directory to continue when ``resume`` (``--resume`` of a long benchmark whose session was killed),
    else None. The benchmark's command must be the one that started the run: every training argument is compared
    with the saved ones, and a difference or a run with no saved state is an error that says which."""
    if not resume:
        return None
    from pathlib import Path

    from gato.training.state import ResumeError, saved_args

    run = Path(train_args.save_dir) / train_args.exp_name
    try:
        saved = saved_args(run)
    except (ResumeError, FileNotFoundError) as error:
        sys.exit(f"--resume: {error}; without --resume the run starts afresh")
    now = train_args.to_dict()
    differing = sorted(k for k in now if k in saved and saved[k] != now[k])
    if differing:
        sys.exit(f"--resume: {run} was started with other training arguments ("
                 + ", ".join(f"{k}: {saved[k]!r} then, {now[k]!r} now" for k in differing)
                 + "); repeat the command that started it, with --resume")
    return run


def train_recording(trainer, point, resume_from=None) -> float:
    """``trainer.train(resume_from)``, with ``point(results, trainer)`` called on the main process after every
    evaluation of the run (so each becomes a point of the curves, on disk at once); returns the wall-clock
    minutes."""
    evaluate = trainer.evaluate

    def evaluate_and_record():
        results = evaluate()
        if trainer.accelerator.is_main_process:
            point(results, trainer)
        return results

    trainer.evaluate = evaluate_and_record
    start = time.monotonic()
    trainer.train(resume_from=resume_from)
    return round((time.monotonic() - start) / 60, 2)

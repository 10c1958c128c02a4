"""The README.md model card a checkpoint folder carries, so the Hugging Face Hub takes the folder as is.

YAML front matter (``library_name``, ``tags``, and a ``model-index`` whose results are the last
evaluation in the checkpoint's history), then a short body: the tasks, how to load and play. The
YAML is written here as JSON flow values (JSON is YAML), which needs no YAML or Hub library:
``huggingface_hub``'s ``ModelCard`` reads it offline (tests/test_checkpoint_agent.py checks that).
"""

from __future__ import annotations

import json
import re

LIBRARY_NAME = "neko-gato"


def last_evaluation(history: list[dict] | None) -> tuple[int | None, dict]:
    """(step, {task: metrics}) of the last history entry holding an evaluation; (None, {}) if none does."""
    for entry in reversed(history or []):
        if entry.get("eval"):
            return entry.get("step"), entry["eval"]
    return None, {}


def _metric_rows(name: str, metrics: dict) -> list[dict]:
    """model-index metrics of one task: mean return (as "mean +/- std", the Hub's RL form) and, when
    there are reference returns, the normalised score; a language task's metrics by name."""
    if "mean_return" in metrics:
        rows = [{"type": "mean_reward", "name": "mean_reward", "verified": False,
                 "value": f"{metrics['mean_return']:.2f} +/- {metrics.get('std_return', 0.0):.2f}"}]
        if "normalized_score" in metrics:
            rows.append({"type": "normalized_score", "name": "normalized score (1 = dataset's expert, 0 = random)",
                         "verified": False, "value": round(float(metrics["normalized_score"]), 4)})
        return rows
    return [{"type": key, "name": key, "verified": False, "value": round(float(value), 4)}
            for key, value in metrics.items() if isinstance(value, (int, float)) and not isinstance(value, bool)]


def _key(key) -> str:
    """A mapping key: bare when it is a plain name, else quoted."""
    return key if re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]*", str(key)) else json.dumps(str(key))


def _yaml(value, indent: int = 0) -> str:
    """Block YAML for dicts and lists, JSON (valid YAML) for scalars."""
    pad = " " * indent
    if isinstance(value, dict):
        return "\n".join(f"{pad}{_key(k)}:" + (("\n" + _yaml(v, indent + 2)) if isinstance(v, (dict, list)) and v
                                                      else " " + json.dumps(v)) for k, v in value.items())
    if isinstance(value, list):
        lines = []
        for item in value:
            body = _yaml(item, indent + 2) if isinstance(item, (dict, list)) and item else pad + "  " + json.dumps(item)
            lines.append(pad + "- " + body.lstrip())
        return "\n".join(lines)
    return pad + json.dumps(value)


def model_card(name: str, tasks: list[dict] | None, history: list[dict] | None) -> str:
    """The README.md text of a checkpoint named ``name`` trained on ``tasks`` (their specs) with ``history``."""
    tasks = tasks or []
    step, results = last_evaluation(history)
    envs = sorted({json.loads(t["env_spec"])["id"] for t in tasks if t.get("env_spec")})
    datasets = sorted({t["dataset_id"] for t in tasks if t.get("dataset_id")})
    tags = [LIBRARY_NAME, "gato", "reinforcement-learning", "minari", *envs]
    index = []
    for task in tasks:
        task_name = task.get("env_name") or task.get("name", "?")
        if task_name not in results:
            continue
        control = task.get("type") == "control"
        kind = "reinforcement-learning" if control else task.get("type", "text")
        dataset = task.get("dataset_id") or task.get("source") or task_name
        index.append({"task": {"type": kind, "name": kind},
                      "dataset": {"name": task_name, "type": str(dataset)},
                      "metrics": _metric_rows(task_name, results[task_name])})
    front = {"library_name": LIBRARY_NAME, "tags": tags}
    if datasets:
        front["datasets"] = datasets
    if index:
        front["model-index"] = [{"name": name, "results": index}]
    lines = ["---", _yaml(front), "---", "", f"# {name}", "",
             "A Gato-style policy (one causal transformer over tokenised observations and actions) trained with "
             "neko-gato. The folder holds everything it needs to act: the weights "
             "(model.safetensors), the model's settings (config.json) and, in tasks.json, each task's codec, "
             "environment and reference returns; no dataset is needed to act or evaluate.", "",
             "| task | env | episodes | mean return | normalised score |", "|---|---|---|---|---|"]
    for task in tasks:
        task_name = task.get("env_name") or task.get("name", "?")
        metrics = results.get(task_name, {})
        env = json.loads(task["env_spec"])["id"] if task.get("env_spec") else ""
        mean = f"{metrics['mean_return']:.3f}" if "mean_return" in metrics else ""
        score = f"{metrics['normalized_score']:.3f}" if "normalized_score" in metrics else ""
        episodes = f"{metrics['episodes']:.0f}" if "episodes" in metrics else ""
        lines.append(f"| {task_name} | {env} | {episodes} | {mean} | {score} |")
    control = [t["env_name"] for t in tasks if t.get("type") == "control" and t.get("env_name")]
    example = control[0] if control else "NAME"
    lines += ["", f"Evaluation: the last one of training (step {step})." if step is not None
              else "Not evaluated yet.", "", "```bash",
              f"gato play CHECKPOINT --task {example} --episodes 5 --video videos/",
              "gato eval CHECKPOINT --episodes 100", "```", "", "```python",
              "from gato.tasks.registry import load_agent", "",
              f"agent = load_agent(\"CHECKPOINT\", task={json.dumps(example)})",
              "env = agent.task.make_env()", "```", ""]
    return "\n".join(lines)

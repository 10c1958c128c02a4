"""The ``gato`` command: data, inspect, train, eval, play.

    gato data babyai --level GoToLocal --episodes 5000   write a BabyAI bot dataset (Minari)
    gato data babyai --levels jat --episodes 5000       one per level of JAT's 39 (resumable; a table of drops)
    gato inspect babyai/GoToLocal-bot-v0                per-field token layout of a dataset or env
    gato inspect babyai/GoToLocal-bot-v0 --steps 3      an episode's first timesteps, token by token
    gato train                                          the main job: BabyAI GoToLocal, ~20 min
    gato train --resume runs/NAME                       continue a killed run from its last saved state
    gato eval runs/NAME/checkpoint                      evaluate a checkpoint, write JSON (no dataset needed)
    gato eval runs/NAME/checkpoint --suite jat mt50     per domain: the suite's table and aggregates with 95% CIs
    gato play runs/NAME/checkpoint --task NAME --video videos/   watch it act: returns and GIFs
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import warnings
from pathlib import Path

from gato.table import format_table  # imports nothing, so the warning filter below still comes first

# minigrid re-registers its envs if imported after gymnasium's plugin hook did; the
# resulting 'Overriding environment' warnings say nothing to a user.
warnings.filterwarnings("ignore", message=".*Overriding environment.*")


# ----------------------------------------------------------------------------- data


LANGUAGE_DATA = ("text", "captions", "vqa")
"""``gato data`` kinds that write an offline text/image default (gato.data.default_corpora)."""


def cmd_data(ns) -> int:
    from gato.data.babyai import generate_babyai
    from gato.data.recipes import generate

    if ns.recipe in LANGUAGE_DATA:
        return _language_data(ns)
    if ns.recipe == "metaworld":
        return _metaworld_data(ns)
    if ns.recipe == "list":
        from gato.data.catalogue import list_rows

        print(format_table(list_rows()))
        print("\n`gato data NAME --episodes N` writes one; `gato train --control_datasets ID ...` makes missing ones.")
        from gato.data.default_corpora import DEFAULT_BY_KIND, list_defaults

        commands = {name: f"gato data {kind}" for kind, name in DEFAULT_BY_KIND.items()}
        print("\n" + format_table([{"command": commands[r["name"]], "dataset": r["name"], "made": "yes" if r["made"]
                                    else "no", "what": r["what"]} for r in list_defaults()]))
        print("\nUse them with `gato train --text_datasets text/pydoc --text_prop 0.2` (likewise caption, vqa).")
        return 0
    if ns.recipe == "babyai" and ns.levels:
        return _babyai_suite(ns)
    if ns.recipe == "babyai":
        episodes = _one_count(ns.episodes)
        report = generate_babyai(ns.level, episodes or 5000, dataset_id=ns.dataset_id, seed=ns.seed,
                                 workers=ns.workers, episode_timeout_s=ns.episode_timeout, overwrite=ns.overwrite,
                                 noise=ns.noise, max_steps=ns.max_steps)
    else:
        report = generate(ns.recipe, _one_count(ns.episodes), dataset_id=ns.dataset_id, seed=ns.seed,
                          workers=ns.workers, overwrite=ns.overwrite, action_noise=ns.action_noise)
    if not report.episodes_written:
        print(f"no episode succeeded ({dict(report.skip_reasons)}); nothing was written", file=sys.stderr)
        return 1
    print(f"wrote {report.dataset_id}: {report.episodes_written} episodes, {report.episodes_skipped} skipped "
          f"{dict(report.skip_reasons) or ''} in {report.seconds:.1f}s")
    print(f"expert return {report.expert_mean_return:.3f} +- {report.expert_std_return:.3f}, "
          f"random {report.random_mean_return:.3f} +- {report.random_std_return:.3f}")
    return 0


def _one_count(episodes: list[str] | None) -> int | None:
    """``--episodes`` of a single dataset: one number."""
    if not episodes:
        return None
    if len(episodes) != 1 or not episodes[0].isdigit():
        raise ValueError(f"--episodes {' '.join(episodes)}: one dataset takes one count (LEVEL=N pairs go with "
                         "`gato data babyai --levels ...`)")
    return int(episodes[0])


def _babyai_suite(ns) -> int:
    """``gato data babyai --levels jat|all|NAME ...``: one dataset per level, then a table of what each got."""
    from gato.data.babyai_suites import episode_counts, generate_babyai_suite, resolve_levels

    if ns.dataset_id:
        raise ValueError("--dataset_id names one dataset; with --levels each level goes to babyai/LEVEL-bot-v0")
    levels = resolve_levels(ns.levels)
    counts = episode_counts(ns.episodes, levels)
    print(f"{len(levels)} BabyAI levels, {sum(counts.values()):,} bot episodes in all, {ns.workers} worker(s); "
          "levels already written are kept (--overwrite replaces them)")
    outcomes = generate_babyai_suite(levels, counts, workers=ns.workers, episode_timeout_s=ns.episode_timeout,
                                     max_steps=ns.max_steps, seed=ns.seed, overwrite=ns.overwrite, noise=ns.noise)
    print(format_table([o.row() for o in outcomes]))
    kept = [o.level for o in outcomes if o.status == "kept"]
    if kept:
        print(f"\nkept as they were ({len(kept)}): {', '.join(kept)}")
    short = [o for o in outcomes if o.short]
    if short:
        print(f"\n{len(short)} level(s) have fewer episodes than requested: "
              + ", ".join(f"{o.level} {o.episodes}/{o.requested}" for o in short), file=sys.stderr)
        if not ns.allow_short:
            print("raise --episode_timeout or --max_steps, or accept them with --allow_short "
                  "(a kept level: --overwrite regenerates it)", file=sys.stderr)
            return 1
    return 0


def _metaworld_data(ns) -> int:
    """``gato data metaworld --tasks ...``: a dataset per task, played in one pool (gato.data.experts.metaworld)."""
    from gato.data.experts.metaworld import FAILURE_TOLERANCE, generate_metaworld, summary_rows

    reports = generate_metaworld(ns.tasks, _one_count(ns.episodes) or 100, seed=ns.seed, workers=ns.workers,
                                 overwrite=ns.overwrite, action_noise=ns.action_noise)
    print(format_table(summary_rows(reports)))
    failing = summary_rows(reports, only_failing=True)
    if failing:
        print(f"\nthe scripted policy fails more than {FAILURE_TOLERANCE:.0%} of its clean episodes on:\n"
              + format_table(failing))
    return 0


def _language_data(ns) -> int:
    """``gato data text|captions|vqa``: write that offline default as a local Hugging Face dataset."""
    from gato.data.default_corpora import DEFAULT_BY_KIND, make_default

    report = make_default(DEFAULT_BY_KIND[ns.recipe], overwrite=ns.overwrite)
    rows = ", ".join(f"{split} {n}" for split, n in report["rows"].items())
    print(f"wrote {report['name']} to {report['path']} ({rows} rows) in {report['seconds']:.1f}s")
    print(f"baselines: {json.dumps(report['baselines'])}")
    return 0


# ----------------------------------------------------------------------------- inspect


def cmd_inspect(ns) -> int:
    from gato.codec import SpaceCodec, bound_images
    from gato.data.writer import local_dataset_exists
    from gato.envs import ENV_PLUGINS, is_env_id, make_env

    overrides = json.loads(ns.field_overrides) if ns.field_overrides else None
    if (ns.steps or ns.picture) and not local_dataset_exists(ns.name):
        print(f"--steps and --picture show a dataset's episodes; {ns.name!r} is not a local dataset",
              file=sys.stderr)
        return 2
    if local_dataset_exists(ns.name):
        from gato.data.episodes import RawEpisodes, fit_codec, load_minari

        dataset = load_minari(ns.name)
        codec = fit_codec(RawEpisodes.read(dataset, ns.name), dataset.observation_space, dataset.action_space,
                          patch_size=ns.patch_size, overrides=overrides, metadata=dataset.storage.metadata,
                          max_patches=ns.max_image_patches or None, constant_text=ns.constant_text)
        source = f"dataset {ns.name} ({dataset.total_episodes} episodes)"
    elif is_env_id(ns.name):
        env = make_env(ns.name)
        if ns.max_image_patches:
            probe = SpaceCodec(env.observation_space, env.action_space, patch_size=ns.patch_size, overrides=overrides)
            overrides = bound_images(probe.obs_fields, overrides or {}, ns.max_image_patches)
        codec = SpaceCodec(env.observation_space, env.action_space, patch_size=ns.patch_size, overrides=overrides)
        env.close()
        source = f"env {ns.name} (text budgets are defaults; a dataset measures its longest string)"
    else:
        print(f"{ns.name!r} is neither a local Minari dataset nor a Gymnasium env id (even with the installed "
              f"plugins {', '.join(ENV_PLUGINS)} imported)", file=sys.stderr)
        return 2
    print(source)
    rows = [{**r, "space": r["space"] if len(r["space"]) <= 48 else r["space"][:45] + "..."} for r in codec.layout()]
    print(format_table(rows))
    print(f"\ntokens per timestep: {codec.tokens_per_step}")
    if codec.tokens_per_later_step < codec.tokens_per_step:
        once = ", ".join(f.name for f in codec.obs_fields if f.once)
        print(f"tokens per later timestep of a window: {codec.tokens_per_later_step} ({once} read once per window)")
    for ctx in ns.context_len:
        print(f"timesteps in a {ctx}-token context: {codec.timesteps_in(ctx)}")
    if ns.steps or ns.picture:
        return _inspect_steps(codec, dataset, ns)
    return 0


def _listed(items: list, most: int = 12, sep: str = " ") -> str:
    """Items joined by ``sep``, the middle left out past ``most``."""
    items = [str(i) for i in items]
    if len(items) <= most:
        return sep.join(items)
    return sep.join(items[: most - 2]) + f"{sep}...{sep}{items[-1]} ({len(items)} tokens)"


def _inspect_steps(codec, dataset, ns) -> int:
    """``gato inspect DATASET --steps N [--picture FILE]``: an episode's first timesteps, token by token."""
    from gato.data.inspection import _at, describe_steps, patch_picture

    indices = list(dataset.episode_indices)
    if not 0 <= ns.episode < len(indices):
        print(f"--episode {ns.episode} is not one of the {len(indices)} episodes (0..{len(indices) - 1})",
              file=sys.stderr)
        return 2
    episode = next(iter(dataset.iterate_episodes([int(indices[ns.episode])])))
    obs, actions, rewards = episode.observations, episode.actions, episode.rewards
    for step in describe_steps(codec, obs, actions, rewards, ns.steps):
        left_out = [g["field"] for g in step["fields"] if step["step"] and g.get("once")]
        note = f" ({', '.join(left_out)} in the window's first timestep only)" if left_out else ""
        print(f"\nepisode {ns.episode}, timestep {step['step']} (reward {step['reward']:g}): "
              f"{len(step['fed'])} tokens{note}")
        print(format_table([{"field": g["field"], "value": g["value"], "ids": _listed(g["ids"]),
                             "meaning": _listed(g["meanings"], 8, "; ")} for g in step["fields"]]))
        action_ids = " ".join(map(str, step["tokens"][-codec.action_tokens:]))
        print(f"action tokens {action_ids} decode to the action {step['action']}")
        print(f"row: {' '.join(map(str, step['tokens']))}")
    if ns.picture:
        height, width = patch_picture(codec, _at(obs, 0), ns.picture)
        print(f"\nwrote {ns.picture} ({width}x{height} pixels): the image patches of episode {ns.episode}'s first "
              "observation as the model receives them")
    return 0


# ----------------------------------------------------------------------------- train


def cmd_train(ns) -> int:
    from gato.training.arguments import TrainingArgs
    from gato.training.run import build_trainer

    args = resumed_args(ns) if ns.resume else TrainingArgs.from_namespace(ns)
    trainer = build_trainer(args)
    acc = trainer.accelerator
    if acc.is_main_process:
        print(f"{acc.num_processes} process(es) on {acc.device}, {trainer.micro_batch_size()} rows each per "
              f"micro-batch (global batch {args.batch_size})")
        for task, weight in zip(trainer.tasks, trainer.weights):
            what = (f"{len(task.episodes.lengths)} episodes, {task.tokens_per_timestep} tokens per timestep"
                    if hasattr(task, "episodes") else task.spec()["type"])
            print(f"task {task.name} ({weight:.0%} of rows): {what}")
        n_params = sum(p.numel() for p in trainer.policy.parameters())
        print(f"policy: {n_params / 1e6:.2f}M parameters; outputs in {trainer.run_dir}")
        if ns.resume:
            print(f"resuming {ns.resume} (its saved arguments)")
    results = trainer.train(resume_from=ns.resume or None)
    if trainer.accelerator.is_main_process:
        print()
        print_scores(results)
        print(f"\ncheckpoint: {trainer.run_dir / 'checkpoint'}"
              f"\nlearning curve: {trainer.run_dir / 'learning_curve.png'}")
        if {"tensorboard", "all"} & set(args.trackers()):
            print(f"tensorboard: tensorboard --logdir {trainer.run_dir / 'logs'}")
    trainer.close()
    return 0


def resumed_args(ns):
    """The saved TrainingArgs of the run ``ns.resume`` (its outputs stay in that directory). A flag given with
    ``--resume`` whose value differs from the saved one is an error: the resumed run must be the same run."""
    import dataclasses

    from gato.training.arguments import TrainingArgs
    from gato.training.state import ResumeError, saved_args, state_dir

    run = state_dir(ns.resume).parent  # --resume takes the run directory or its state folder
    saved = saved_args(run)
    fields = {f.name: f for f in dataclasses.fields(TrainingArgs)}
    values = {k: v for k, v in saved.items() if k in fields}
    # runs saved before the mission was read once per window laid it out in every timestep
    values.setdefault("constant_text", "step")
    values.setdefault("film_carry", False)
    values.update(save_dir=str(run.parent), exp_name=run.name)
    defaults = TrainingArgs()
    differing = [name for name in fields if name not in ("save_dir", "exp_name")
                 and getattr(ns, name) != getattr(defaults, name) and getattr(ns, name) != values.get(name)]
    if differing:
        raise ResumeError(f"--resume continues {run} with its saved arguments; drop "
                          + ", ".join(f"--{n}" for n in differing) + " (or start a new run)")
    args = TrainingArgs(**values)
    args.validate()
    return args


def print_scores(results: dict) -> dict:
    """Print the score table and the mean / IQM of the normalised scores; return the summary."""
    from gato.evaluation.scores import language_rows, score_rows, summary

    for rows in (score_rows(results), language_rows(results)):
        if rows:
            print(format_table(rows) + "\n")
    s = summary(results)
    if s["tasks_scored"]:
        # without the eval extra (rliable) there is no IQM; with one task it would only repeat the mean
        iqm = "" if "iqm_unavailable" in s else f", IQM {s['iqm_normalized_score']:.3f}"
        print(f"normalised score over {s['tasks_scored']} tasks: mean {s['mean_normalized_score']:.3f}{iqm}")
        if "iqm_unavailable" in s and s["tasks_scored"] > 1:
            print(s["iqm_unavailable"])
    return s


# ----------------------------------------------------------------------------- eval


def format_domain(report: dict) -> str:
    """A domain report (``gato.evaluation.suite.domain_report``) as text: the per-task table, then the aggregates of
    the normalised score and the success rate with their 95% intervals."""
    from gato.evaluation.suite import aggregate_lines, table_rows

    return "\n".join([format_table(table_rows(report)), "", *aggregate_lines(report)])


def report_domains(results: dict, out: Path, suites: list[str] | None = None) -> dict:
    """What ``gato eval`` does per domain (BabyAI, Meta-World): print the per-task table and the aggregates, draw the
    chart ``<out stem>_<domain>.png``; returns ``{domain: report}`` for eval.json. A domain is reported when a suite
    of it is asked for or it has two scored tasks; without rliable, an unasked report becomes a note."""
    from gato.evaluation.suite import MissingExtraError, domain_reports, draw_chart

    try:
        reports = domain_reports(results, suites)
    except MissingExtraError as e:
        if suites:  # asked for: the clear error
            raise
        from gato.evaluation.suite import domains_present

        if any(n >= 2 for n in domains_present(results).values()):
            print(f"\n(several tasks of a domain: the domain aggregate is skipped: {e})")  # the table stands
        return {}
    for domain, report in reports.items():
        print("\n" + format_domain(report))
        print(f"{domain} chart: {draw_chart(report, out.with_name(f'{out.stem}_{domain}.png'))}")
    return reports


def cmd_eval(ns) -> int:
    from gato import atomic
    from gato.data.suites import DOMAINS, member_of, suite_domain
    from gato.evaluation.scores import plot_scores
    from gato.evaluation.suite import babyai_suite_view, rliable_modules
    from gato.evaluation.video import record_video
    from gato.policy.gato_policy import GatoPolicy
    from gato.tasks.registry import load_tasks

    if ns.suite:
        rliable_modules()  # a missing extra is reported before minutes of evaluation, not after
    checkpoint = Path(ns.checkpoint)
    policy = GatoPolicy.from_pretrained(checkpoint, device=ns.device)
    # a checkpoint's saved codecs need no dataset; a prompt is cut from the dataset's episodes
    tasks = load_tasks(checkpoint, policy.vocab, names=ns.tasks, with_data=True if ns.prompt else None)
    domains = {(member_of(t.name) or ("",))[0] for t in tasks}
    for suite in ns.suite or ():  # a suite of a domain the checkpoint lacks: said before evaluating
        if suite_domain(suite) not in domains:
            raise ValueError(f"--suite {suite}: no {DOMAINS[suite_domain(suite)]['label']} task among the tasks "
                             f"evaluated ({' '.join(t.name for t in tasks)}); drop the suite or name its tasks")
    if ns.starts == "data":
        print("episodes start where the datasets' own episodes started (starts seen in training)")
    results, videos = {}, {}
    for task in tasks:
        results[task.name] = task.evaluate(policy, ns.episodes, deterministic=not ns.stochastic,
                                           promptless_eval=not ns.prompt, n_envs=ns.envs, progress=True,
                                           starts=ns.starts)
        if ns.video and hasattr(task, "make_env"):
            gif = Path(ns.video) / (task.name.replace("/", "_") + ".gif")
            videos[task.name] = record_video(policy, task, gif, deterministic=not ns.stochastic)
    print()
    summary = print_scores(results)
    out = Path(ns.out) if ns.out else checkpoint.parent / "eval.json"
    # each written under a temporary name and renamed: a kill leaves the previous file or the new one
    reports = report_domains(results, out, ns.suite)
    legacy = {"suite": babyai_suite_view(reports["babyai"])} if "babyai" in reports else {}  # the pre-domain key
    atomic.write_json(out, {"checkpoint": str(checkpoint), "episodes": ns.episodes, "starts": ns.starts,
                            "results": results, "summary": summary, "videos": videos,
                            **({"domains": reports} if reports else {}), **legacy})
    chart = None
    if summary["tasks_scored"]:
        chart = out.with_suffix(".png")
        with atomic.replacing(chart) as tmp:
            plot_scores(results, tmp)
    print(f"\nwrote {out}" + (f" and {chart}" if chart else ""))
    for name, v in videos.items():
        print(f"video {name}: {v['path']} (return {v['return']:.2f}, {v['length']} steps)")
    return 0


def cmd_play(ns) -> int:
    from gato.evaluation.video import play
    from gato.tasks.registry import load_agent

    agent = load_agent(ns.checkpoint, task=ns.task, device=ns.device, deterministic=not ns.stochastic)
    records = play(agent, ns.episodes, video_dir=ns.video or None, seed=ns.seed)
    rows = [{"episode": i, "seed": r["seed"], "return": float(r["return"]), "length": r["length"],
             **({"gif": r["path"]} if ns.video else {})} for i, r in enumerate(records)]
    print(format_table(rows))
    returns = [r["return"] for r in records]
    print(f"\n{agent.task.name}: mean return {sum(returns) / len(returns):.3f} over {len(returns)} episodes")
    return 0


# ----------------------------------------------------------------------------- words and pictures


def _language_policy(ns):
    from gato.policy.gato_policy import GatoPolicy

    return GatoPolicy.from_pretrained(ns.checkpoint, device=ns.device)


def _image_size(checkpoint) -> int:
    """The image side the checkpoint's caption/VQA tasks were trained at (``gato.images.IMAGE_SIZE`` when it has
    none)."""
    from gato.images import IMAGE_SIZE
    from gato.tasks.registry import task_specs

    sizes = [spec["image_size"] for spec in task_specs(checkpoint) if "image_size" in spec]
    return sizes[0] if sizes else IMAGE_SIZE


def _options(ns) -> dict:
    return {"max_new_tokens": ns.max_new_tokens, "temperature": ns.temperature}


def cmd_generate(ns) -> int:
    from gato.language import generate_text

    print(generate_text(_language_policy(ns), ns.prompt, **_options(ns)))
    return 0


def cmd_caption(ns) -> int:
    from gato.language import caption

    print(caption(_language_policy(ns), ns.image, image_size=_image_size(ns.checkpoint), **_options(ns)))
    return 0


def cmd_ask(ns) -> int:
    from gato.language import ask

    print(ask(_language_policy(ns), ns.image, ns.question, image_size=_image_size(ns.checkpoint), **_options(ns)))
    return 0


def _add_language_commands(sub) -> None:
    commands = [("generate", cmd_generate, "continue a text prompt", [("prompt", "the text to continue")], 64),
                ("caption", cmd_caption, "describe an image", [("image", "image file (any size, RGB or gray)")], 32),
                ("ask", cmd_ask, "answer a question about an image",
                 [("image", "image file (any size, RGB or gray)"), ("question", "the question")], 16)]
    for name, func, help_, positionals, max_new in commands:
        p = sub.add_parser(name, help=f"{help_} with a trained checkpoint")
        p.add_argument("checkpoint", help="checkpoint directory (e.g. runs/NAME/checkpoint)")
        for arg, arg_help in positionals:
            p.add_argument(arg, help=arg_help)
        p.add_argument("--max_new_tokens", type=int, default=max_new, help="most tokens to generate")
        p.add_argument("--temperature", type=float, default=0.0, help="0: greedy; above: sample")
        p.add_argument("--device", default="cpu", help="torch device")
        p.set_defaults(func=func)


# ----------------------------------------------------------------------------- entry point


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of the ``gato`` command."""
    from gato.data.recipes import RECIPES
    from gato.training.arguments import TrainingArgs

    parser = argparse.ArgumentParser(prog="gato", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)

    data = sub.add_parser("data", help="write an expert dataset locally (Minari format)")
    data.add_argument("recipe", choices=["list", "babyai", "metaworld", *RECIPES, *LANGUAGE_DATA],
                      help="dataset recipe (control), text, captions or vqa (offline defaults), or 'list'")
    data.add_argument("--level", default="GoToLocal", help="BabyAI level (e.g. GoToLocal, GoToRedBall)")
    data.add_argument("--levels", nargs="+", metavar="LEVEL",
                      help="babyai: several levels at once: a suite (jat: JAT's 39, all: every level the bot "
                           "solves) or level names; one dataset each, babyai/LEVEL-bot-v0")
    data.add_argument("--episodes", nargs="+", default=None, metavar="N",
                      help="expert episodes to write (default: babyai 5000, others per recipe, see `gato data list`); "
                           "with --levels also per level: GoTo=8000 BossLevel=20000 default=5000, or a JSON file")
    data.add_argument("--max_steps", type=int, default=None,
                      help="babyai: step bound per episode (default: the level's own)")
    data.add_argument("--allow_short", action="store_true",
                      help="babyai --levels: exit 0 even when a level got fewer episodes than requested")
    data.add_argument("--tasks", nargs="+", default=["mt10"], help="metaworld: task names, mt10 or mt50")
    data.add_argument("--dataset_id", default=None, help="Minari id (default: the recipe's, see `gato data list`)")
    data.add_argument("--seed", type=int, default=0, help="first episode seed")
    data.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    data.add_argument("--episode_timeout", type=float, default=5.0,
                      help="babyai: seconds before a bot episode is abandoned")
    data.add_argument("--overwrite", action="store_true", help="replace an existing dataset of that id")
    data.add_argument("--noise", type=float, default=0.0,
                      help="babyai: probability of a random move the bot then recovers from")
    data.add_argument("--action_noise", type=float, default=None,
                      help="other recipes: perturb executed actions while storing the expert's (default: the recipe's)")
    data.set_defaults(func=cmd_data)

    inspect = sub.add_parser("inspect", help="token layout of a dataset's or env's spaces")
    inspect.add_argument("name", help="local Minari dataset id or Gymnasium env id")
    inspect.add_argument("--patch_size", type=int, default=4, help="image patch side")
    inspect.add_argument("--context_len", type=int, nargs="*", default=[512, 1024],
                         help="contexts to count timesteps for")
    inspect.add_argument("--field_overrides", default="", help='JSON {field path: kind or spec}')
    inspect.add_argument("--constant_text", choices=["window", "step"], default="window",
                         help="a text that never changes within an episode: once per window, or in every timestep")
    inspect.add_argument("--max_image_patches", type=int, default=0,
                         help="the most patches an image takes (a larger one is pooled); 0: the default, 64")
    inspect.set_defaults(func=cmd_inspect)
    inspect.add_argument("--steps", type=int, default=0, metavar="N",
                         help="print an episode's first N timesteps as they reach the model: raw values, token ids "
                              "and what they mean, the separator, the action tokens and the action they decode to")
    inspect.add_argument("--episode", type=int, default=0, help="which episode --steps and --picture show")
    inspect.add_argument("--picture", default="", metavar="FILE",
                         help="write a PNG of the episode's first observation's image patches as the model gets them")

    train = sub.add_parser("train", help="train a policy (no flags: the BabyAI main job)")
    TrainingArgs.add_arguments(train)
    train.add_argument("--resume", default="", metavar="RUN_DIR",
                       help="continue the run in RUN_DIR (e.g. runs/NAME) exactly where its last saved state left "
                            "it, with its saved arguments (other flags must be left out or equal)")
    train.set_defaults(func=cmd_train)

    ev = sub.add_parser("eval", help="evaluate a checkpoint on its tasks; writes JSON")
    ev.add_argument("checkpoint", help="checkpoint directory (holds config.json, model.safetensors, tasks.json)")
    ev.add_argument("--episodes", type=int, default=100, help="episodes per task")
    ev.add_argument("--tasks", nargs="+", metavar="NAME", help="evaluate only these tasks (default: all of them)")
    ev.add_argument("--envs", type=int, default=16, help="environments stepped together")
    ev.add_argument("--stochastic", action="store_true", help="sample actions instead of argmax")
    ev.add_argument("--prompt", action="store_true", help="prompt with an expert episode's end (NEKO style)")
    from gato import seeds

    ev.add_argument("--starts", choices=seeds.STARTS, default=seeds.EVALUATION.name,
                    help="where episodes start: evaluation (default: seeds no dataset was made from, every start "
                         "unseen) or data (the dataset's own episodes' seeds, starts the model trained on, as "
                         "Meta-World's MT10/MT50 score; needs the datasets local)")
    ev.add_argument("--device", default="cpu", help="torch device")
    ev.add_argument("--out", default="", help="JSON output path (default: next to the checkpoint); the bar chart "
                    "goes beside it as .png")
    ev.add_argument("--video", default="", help="directory for one GIF rollout per task")
    from gato.data.suites import SUITES

    ev.add_argument("--suite", nargs="+", choices=list(SUITES), default=None, metavar="SUITE",
                    help="score the checkpoint's tasks of a domain as this suite, one per domain (BabyAI: jat, all; "
                         "Meta-World: mt10, mt50): per task, then mean/median/IQM of the normalised score and the "
                         "success rate with 95%% CIs by rliable, the suite's missing tasks listed (needs the eval "
                         "extra); without it, each domain with two or more tasks is scored over the tasks it has")
    ev.set_defaults(func=cmd_eval)

    play = sub.add_parser("play", help="watch a checkpoint act in one of its tasks (no dataset needed)")
    play.add_argument("checkpoint", help="checkpoint directory (e.g. runs/NAME/checkpoint)")
    play.add_argument("--task", default=None, help="control task name (default: the checkpoint's only one)")
    play.add_argument("--episodes", type=int, default=3, help="episodes to play")
    play.add_argument("--video", default="", metavar="DIR", help="write each episode as a GIF in DIR")
    play.add_argument("--seed", type=int, default=1_000_000, help="episode i's seed is SEED + i (default: the "
                      "evaluation seeds, so the returns are gato eval's)")
    play.add_argument("--stochastic", action="store_true", help="sample actions instead of argmax")
    play.add_argument("--device", default="cpu", help="torch device")
    play.set_defaults(func=cmd_play)
    _add_language_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the ``gato`` command; user errors print one clear line instead of a traceback."""
    ns = build_parser().parse_args(argv)
    from gato.errors import USER_ERRORS

    try:
        return ns.func(ns)
    except USER_ERRORS as e:
        print(f"gato {ns.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())

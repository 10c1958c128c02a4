"""The one catalogue of the datasets ``gato data`` makes: which plug-in of the driver writes an id, and how.

Each plug-in of :func:`gato.data.generation.generate` (BabyAI levels, the expert recipes, Meta-World) says which
ids it owns, how it writes a missing one and the command that does, as a
:class:`gato.data.generation.DatasetMaker`. This module is the one list of them, so the driver, the episode
reader (``gato.data.episodes``: the command that remakes a damaged dataset) and the trainer (a missing dataset is
made on the spot) ask here instead of each keeping its own list of id patterns.
"""

from __future__ import annotations

from gato.data import babyai, recipes
from gato.data.experts import metaworld
from gato.data.generation import DatasetMaker, GenerationReport

__all__ = ["MAKERS", "ensure_dataset", "list_rows", "maker_for", "remake_command"]

MAKERS: tuple[DatasetMaker, ...] = (babyai.MAKER, recipes.MAKER, metaworld.MAKER)
"""Every plug-in, in the order ``gato data list`` shows them."""


def maker_for(dataset_id: str) -> DatasetMaker | None:
    """The plug-in that writes ``dataset_id``, or None for an id none of them makes."""
    return next((maker for maker in MAKERS if maker.owns(dataset_id)), None)


def list_rows() -> list[dict]:
    """The rows of ``gato data list``, every plug-in's."""
    return [row for maker in MAKERS for row in maker.list_rows()]


def remake_command(dataset_id: str) -> str:
    """The `gato data` command that rewrites ``dataset_id`` (over a damaged one)."""
    maker = maker_for(dataset_id)
    if maker is not None:
        return maker.command(dataset_id)
    return (f"`gato data RECIPE --dataset_id {dataset_id} --overwrite` with the recipe that made it "
            "(see `gato data list`)")


def ensure_dataset(dataset_id: str, babyai_episodes: int, recipe_episodes: int | None = None,
                   progress: bool = True) -> GenerationReport | None:
    """Generate a missing dataset that a plug-in makes: ``babyai/LEVEL-bot-v0`` (with ``babyai_episodes``
    episodes, the count for a plug-in without a default of its own) or a recipe's id (``cartpole/scripted-v0``,
    ``metaworld/TASK-scripted-v0``, ... with ``recipe_episodes``, default the recipe's own count; see
    ``gato data list``). Other ids must exist locally. Returns the generation report, or None when nothing was
    generated."""
    from gato.data.writer import local_dataset_exists

    if local_dataset_exists(dataset_id):
        return None
    maker = maker_for(dataset_id)
    if maker is None:
        return None  # load_minari reports it, with the fix
    own = maker.default_episodes(dataset_id)
    episodes = babyai_episodes if own is None else (recipe_episodes or own)
    print(f"dataset {dataset_id} not found locally: generating {episodes} {maker.describe(dataset_id)} episodes")
    report = maker.make(dataset_id, episodes, progress=progress)
    print(f"wrote {report.episodes_written} episodes ({report.episodes_skipped} skipped) in {report.seconds:.0f}s")
    return report

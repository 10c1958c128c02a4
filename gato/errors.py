"""Errors a user can cause, which the command line reports in one line (GATO_DEBUG=1: traceback)."""

from __future__ import annotations

import os

USER_ERRORS: tuple = () if os.environ.get("GATO_DEBUG") else (
    ValueError,  # bad spaces, values, arguments, checkpoints (their classes subclass ValueError)
    FileNotFoundError,  # missing datasets
    FileExistsError,  # a dataset id that is taken
    FloatingPointError,  # a diverged loss
    ImportError,  # a recipe's optional dependency (gato.data.recipes.MissingDependencyError)
)

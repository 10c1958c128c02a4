"""The defaults a control task shares with ``gato train``'s flags, each written once.

``ControlTask``, its ``WindowSampler`` and ``TrainingArgs`` read them from here. This module imports
nothing, so that the command line's parser (which builds ``TrainingArgs``) stays quick to start.
"""

EVAL_ENVS = 16
"""Environments stepped together in an evaluation (``--eval_envs``, ``ControlTask(eval_envs=...)``)."""

PROMPT_EP_PROPORTION = 0.0
"""Share of training windows preceded by a prompt (NEKO: 0.25)."""

PROMPT_LEN_PROPORTION = 0.5
"""Share of the context a prompt takes."""

SHARE_PROMPT_EPISODES = True
"""A prompt comes from the window's own episode (``--unique_prompt_episodes`` is its negation)."""

PROMPT_TYPE = "end"
"""Part of the prompt episode used: start, end or uniform."""

WINDOW_SAMPLINGS = ("fit", "even")
"""Where a training window falls: whole anywhere it fits, or every timestep equally often (``--window_sampling``)."""

WINDOW_SAMPLING = "fit"
"""The default of :data:`WINDOW_SAMPLINGS`."""

EPISODE_PREFIX = 0
"""Training windows come from each episode's first this many timesteps only; 0: from all of them
(``--episode_prefix``)."""

TOP_K_PROMPTING = None
"""Prompt episodes come from the k best by return; None: from all (``--top_k 0``)."""

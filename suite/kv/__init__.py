"""Head-level KV compression in the suite (beyond the paper: its Conclusion's first direction).

The names below are this study's face to ``run_suite.py``, as every section's are: ``profiles.py`` sizes it,
``stage.py`` decodes every strategy at every budget, ``tables.py`` and ``figures.py`` report them. The engine
side is :mod:`dynheads.models.engine.kv`.
"""

from __future__ import annotations

from .profiles import PROFILES, add_arguments, model_args, profile
from .tables import RESULT_FILES, console, leaderboard_columns, leaderboard_section, tables

__all__ = ["PROFILES", "RESULT_FILES", "add_arguments", "console", "leaderboard_columns", "leaderboard_section",
           "model_args", "profile", "tables"]

"""NIAH in the suite (paper Section 3, Eq. 1 heads): its profile, stages and tables.

The names below are the task's face to ``run_suite.py``; ``report.py`` prints length x depth tables from lm-eval's
``--log_samples`` (the engine's benchmark is :mod:`dynheads.suite.benchmarks.engine`).
"""

from .profiles import add_arguments, model_args, profile
from .tables import RESULT_FILES, console, leaderboard_columns, leaderboard_section, tables

__all__ = ["RESULT_FILES", "add_arguments", "console", "leaderboard_columns", "leaderboard_section", "model_args",
           "profile", "tables"]

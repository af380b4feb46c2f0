"""Hallucination detection in the suite (beyond the paper: its Conclusion's conjecture).

The names below are this study's face to ``run_suite.py``, as every section's are: ``profiles.py`` sets it,
``data.py`` reads the traced answers, ``stage.py`` fits and scores the detectors, ``tables.py`` and ``figures.py``
report them.
"""

from __future__ import annotations

from .profiles import SETTINGS, add_arguments, model_args, profile
from .tables import RESULT_FILES, console, leaderboard_columns, leaderboard_section, tables

__all__ = ["RESULT_FILES", "SETTINGS", "add_arguments", "console", "leaderboard_columns", "leaderboard_section",
           "model_args", "profile", "tables"]

"""Section 5 in the suite: in-context dynamic RAG on HotpotQA (the mechanism is :mod:`dynheads.models.rag.algorithm`).

The names below are this section's face to ``run_suite.py``, as every section's are: ``profiles.py`` sizes it,
``stage.py`` runs the strategies, ``tables.py`` writes Tables 4 and 6 and the leaderboard's RAG section (what
sharing the context prefill saves: :mod:`dynheads.suite.benchmarks.rag_cost`).
"""

from __future__ import annotations

from .profiles import add_arguments, model_args, profile
from .tables import RESULT_FILES, console, leaderboard_columns, leaderboard_section, tables

__all__ = ["RESULT_FILES", "add_arguments", "console", "leaderboard_columns", "leaderboard_section", "model_args",
           "profile", "tables"]

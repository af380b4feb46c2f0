"""HotpotQA in the suite (paper Section 4, Eq. 2 heads): its profile, stages and tables.

The names below are the task's face to ``run_suite.py``; ``ablation.py`` bins Figure 6,
``figures.py`` draws Figures 5 and 6.
"""

from .profiles import add_arguments, model_args, profile
from .tables import RESULT_FILES, console, leaderboard_columns, leaderboard_section, tables

__all__ = ["RESULT_FILES", "add_arguments", "console", "leaderboard_columns", "leaderboard_section", "model_args",
           "profile", "tables"]

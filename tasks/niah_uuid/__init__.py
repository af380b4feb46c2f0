"""``niah_uuid``: needle-in-a-haystack with fresh UUID needles (paper Appendix A.1).

``niah_uuid.yaml`` is the lm-eval task (``--include_path <dynheads>/tasks``); ``haystack.py`` builds the
documents, ``utils.py`` holds the lm-eval hooks, and
``python -m dynheads.suite.niah.report SAMPLES.jsonl`` prints length × depth tables from
``--log_samples`` output.
"""

# This task's documents get their static heads from this task's calibration ('niah' kind); the model
# layer cannot import tasks, so the task registers it when lm-eval (or run_suite) imports the package.
from ...models.harness.static_heads import register_calibration
from .calibration import CALIBRATION

register_calibration(CALIBRATION)

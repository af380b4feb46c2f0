"""``niah_uuid``: needle-in-a-haystack with fresh UUID needles (paper Appendix A.1).

``niah_uuid.yaml`` is the lm-eval task (``--include_path <dynheads>/tasks``); ``haystack.py`` builds the
documents, ``utils.py`` holds the lm-eval hooks and per-cell summaries, and
``python -m dynheads.tasks.niah_uuid.report SAMPLES.jsonl`` prints length × depth tables from
``--log_samples`` output.
"""

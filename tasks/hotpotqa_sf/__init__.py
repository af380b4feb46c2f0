"""The ``hotpotqa_sf`` task (paper Section 4): HotpotQA distractor questions with supporting facts.

``data.py`` loads examples (vendored dev/train, local official / HF-columnar / JSONL files, or the
Hub); ``utils.py`` builds the prompts with supporting-sentence character spans and scores EM/F1
with the official normalisation (``hotpotqa_sf.yaml`` wires them into lm-eval).
"""

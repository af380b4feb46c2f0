"""``hotpotqa_sf``: HotpotQA, distractor setting, with supporting facts (``data.py`` loads the examples)."""

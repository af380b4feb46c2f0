"""Trace engine, attention hook, the ``dynheads`` lm-eval model and model loading.

Importing any of it first checks that torch and transformers have the major versions the engine is
tested on (:mod:`dynheads.models.versions`): one clear error instead of silently different decoding.
"""

from .versions import check_versions

check_versions()

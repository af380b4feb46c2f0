"""The model side, one folder per role: ``engine/`` (decoding, tracing, conditions), ``rag/`` (Section 5 on the
step API), ``harness/`` (the ``dynheads`` lm-eval model, its arguments, loading) and ``verify/`` (the independent check).

Importing any of it first checks that torch and transformers have the major versions the engine is
tested on (:mod:`dynheads.models.versions`): one clear error instead of silently different decoding.
"""

from .versions import check_versions

check_versions()

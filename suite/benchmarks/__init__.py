"""Benchmarks, in one place: what the engine costs against plain HF ``generate`` (``engine.py``, the
``dynheads-bench`` command), what bfloat16 changes on the embedded model (``precision.py``), and what sharing one
context prefill saves in Section 5 (``rag_cost.py``). Each is a command; none is a stage of ``run_suite.py``."""

"""Section 5 on the step API: in-context dynamic RAG (the paper's Algorithms 1 and 2 on top of DRAGIN).

* ``rind.py``, ``windows.py``: pure functions (RIND scores of a draft's words; windows from averaged attention);
* ``algorithm.py``: Algorithm 1 (draft, detect a need, retrieve, regenerate) and Algorithm 2 (retrieve) on the
  trace engine, with every strategy of an example sharing one context prefill;
* ``measures.py``: per-answer retrieval measures as lm-eval metrics (stdlib only: tasks import it at start-up).

The ``dynheads`` model's ``rag=`` requests (strategies, head choosers, trace lines) are lm-eval's side, in
:mod:`dynheads.models.harness.rag_requests`; the independent replay of a ``rag:`` line is :mod:`dynheads.models.verify.rag`.
Kept light: importing the package imports none of its modules.
"""

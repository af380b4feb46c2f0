"""Section 5 in one package: in-context dynamic RAG (the paper's Algorithms 1 and 2 on top of DRAGIN).

* ``rind.py``, ``windows.py``: pure functions (RIND scores of a draft's words; windows from averaged attention);
* ``algorithm.py``: Algorithm 1 (draft, detect a need, retrieve, regenerate) and Algorithm 2 (retrieve) on the
  trace engine, with every strategy of an example sharing one context prefill;
* ``requests.py``: the ``dynheads`` model's ``rag=`` requests (strategies, head choosers, trace lines);
* ``measures.py``: per-answer retrieval measures as lm-eval metrics (stdlib only: tasks import it at start-up).

Kept light: importing the package imports none of its modules.
"""

"""Section 5 in the suite: the ``rag`` stage, its tables and the cost benchmark (the mechanism is :mod:`dynheads.models.rag.algorithm`)."""

"""The suite layer: the paper's stages, profiles, resumable cells, tables, figures, probing and benchmarks.

Above ``tasks/`` (what lm-eval loads): each stage runs lm-eval on a task through the ``dynheads`` model
and turns the result files into the paper's tables and figures. ``run_suite.py`` is its command line
and stage registry.
"""

"""See a run: a trace explorer that shows which heads retrieved what, token by token (``python -m dynheads.report DIR``).

Why a package of its own, above the suite: it only reads what the other layers wrote (trace files, through
:mod:`dynheads.traces`) and a tokenizer to show tokens as text; nothing below imports it. The pages are static files
that open from disk with no server and no network fetch: data and script are inlined.
"""

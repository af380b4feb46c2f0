"""The lm-eval harness side: the ``dynheads`` model (:mod:`.lm`), its arguments (:mod:`.settings`), model loading,
prompt encoding, the conditions of a request, static-head calibrations, held-out checks and the probe metrics.

Registered with lm-eval as ``dynheads`` (``dynheads.models.harness.lm:DynHeadsLM``)."""

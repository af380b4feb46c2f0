"""Claim 3 estimators: the last hidden state predicts which heads retrieve now and a few steps ahead.

``cca.py`` (exact and temporal-offset CCA), ``mlp.py`` (the MLP head probes), ``asl.py`` (Asymmetric
Loss), ``split.py`` (train / validation / test by generation), ``evaluation.py`` (micro scores and the
prior / previous-step baselines). scikit-learn's estimator shape throughout; torch for the MLPs.
"""

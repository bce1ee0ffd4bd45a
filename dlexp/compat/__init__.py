"""The private Hydra, OmegaConf, Lightning and Optuna APIs dlexp relies on, one module per library.

Everything dlexp uses from a library beyond its public API goes through :mod:`dlexp.compat.hydra`
(Hydra and OmegaConf; no torch, it is on the fast command-line path),
:mod:`dlexp.compat.lightning` or :mod:`dlexp.compat.optuna`; ``tests/test_compat.py`` holds one
contract test per wrapped API, so an upgrade that changes one fails there, by name, rather than
somewhere in a run.
"""

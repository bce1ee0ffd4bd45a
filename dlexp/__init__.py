"""dlexp: a config-driven deep-learning experiment runner (PyTorch Lightning + Hydra)."""

__version__ = "0.1.0"

"""dlexp: a config-driven deep-learning experiment runner (PyTorch Lightning + Hydra)."""

# The package's version: pyproject.toml reads it from here (`dynamic = ["version"]`), so the
# installed distribution's metadata and ``dlexp.__version__`` always agree.
__version__ = "0.1.0"

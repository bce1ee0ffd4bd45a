"""The model zoo: every model is built by :func:`build_model` from its registered builder."""

from dlexp.models import lenet, mlp  # noqa: F401  (registers the builders)
from dlexp.models.registry import MODELS, Classifier, ModelConfig, build_model, register_model

__all__ = ["MODELS", "Classifier", "ModelConfig", "build_model", "register_model"]

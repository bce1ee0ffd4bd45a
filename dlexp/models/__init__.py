"""The model zoo: every model is built by :func:`build_model` from its registered builder."""

from dlexp.models import (  # noqa: F401  (registers the builders)
    alexnet,
    cifar_resnet,
    googlenet,
    lenet,
    mlp,
    resnet,
    vgg,
)
from dlexp.models.registry import MODELS, Classifier, build_model, register_model

__all__ = ["MODELS", "Classifier", "build_model", "register_model"]

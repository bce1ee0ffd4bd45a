"""The model zoo: every model is built by :func:`build_model` from its registered builder."""

from dlexp.models import (  # noqa: F401  (registers the builders)
    alexnet,
    cifar_resnet,
    googlenet,
    lenet,
    mlp,
    resnet,
    speednet,
    vgg,
)
from dlexp.models.registry import MODELS, Classifier, build_model, register_model
from dlexp.models.speednet import fit_to_data

__all__ = ["MODELS", "Classifier", "build_model", "fit_to_data", "register_model"]

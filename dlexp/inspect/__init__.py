"""What a trained model learned, as pictures: ``dlexp inspect`` and the callbacks behind it.

:mod:`~dlexp.inspect.layers` draws a model's first-layer filters and its stages' feature
maps (written by :class:`~dlexp.inspect.callbacks.LayerPictures` at the end of every run),
:mod:`~dlexp.inspect.activations` the activation functions and their derivatives, and
:mod:`~dlexp.inspect.gradient_flow` records the gradient reaching each layer.
"""

LAYERS_FOLDER = "layers"  # in a run directory: the layer pictures

"""The ``callbacks`` group (``dlexp/conf/callbacks/*.yaml``): Lightning callbacks by name.

Entries are instantiated from their ``_target_``; those dlexp documents have a schema here.
"""

from __future__ import annotations

from dataclasses import dataclass

from dlexp.config.fields import param


@dataclass
class EarlyStoppingConfig:
    """``callbacks.early_stopping``: Lightning's EarlyStopping. Training stops once
    ``monitor`` has not improved by more than ``min_delta`` for ``patience`` validation
    epochs (``check_finite``: at once when it becomes NaN or infinite)."""

    _target_: str = "pytorch_lightning.callbacks.EarlyStopping"
    monitor: str = "val/loss"
    mode: str = param("min", choices=("min", "max"))
    patience: int = param(3, ge=1)
    min_delta: float = param(0.0, ge=0)
    check_finite: bool = True
    stopping_threshold: float | None = None
    divergence_threshold: float | None = None
    verbose: bool = False


@dataclass
class GradientFlowConfig:
    """``callbacks.gradient_flow``: the mean |gradient| of each convolution's and linear
    layer's weights over the first ``epochs`` epochs, into ``<run dir>/gradient_flow.json``
    (plotted by ``dlexp report``)."""

    _target_: str = "dlexp.inspect.gradient_flow.GradientFlow"
    epochs: int = param(1, ge=1)


CALLBACK_SCHEMAS: dict[str, type] = {
    "early_stopping": EarlyStoppingConfig,
    "gradient_flow": GradientFlowConfig,
}

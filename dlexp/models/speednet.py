"""SpeedNet: the small fast network of the speed runs, in the manner of the fastest public
CIFAR-10 trainers (Keller Jordan's airbench, hlb-CIFAR10).

* ``whiten``: a k x k convolution whose filters whiten the image's patches (see
  :class:`PatchWhitening`), fixed from the training images before training starts, then the
  activation;
* ``group1`` … ``groupN``: conv3-pool-norm-act-conv3-norm-act, the first conv of each group
  changing the width (``widths``); every conv starts as an identity on its first input
  channels (Dirac) plus the default random init on the rest;
* ``pool`` (global max), ``flatten``, and a bias-free linear head whose logits are scaled by
  ``logit_scale``.

With ``norm: batch`` and ``norm_scale: false`` the BatchNorm layers learn a shift only
(:class:`ShiftBatchNorm`). The whitening filters and the fixed BatchNorm scales are buffers,
so ``num_params`` counts only what trains, and the checkpoint holds them all.
"""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from dlexp.models.registry import Classifier, register_model
from dlexp.models.surgery import make_head


def patch_moments(images: torch.Tensor, kernel: int, chunk: int = 256):
    """Mean and covariance (float64) of every ``kernel`` x ``kernel`` patch (stride 1) of
    ``images`` (N x C x H x W floats), each patch flattened in (C, kh, kw) order."""
    total = torch.zeros((), dtype=torch.float64)
    sums, products = None, None
    for batch in images.split(chunk):
        patches = batch.double().unfold(2, kernel, 1).unfold(3, kernel, 1)  # N C H' W' kh kw
        flat = patches.permute(0, 2, 3, 1, 4, 5).flatten(3).flatten(0, 2)  # (N H' W') x d
        sums = flat.sum(0) if sums is None else sums + flat.sum(0)
        products = flat.T @ flat if products is None else products + flat.T @ flat
        total += len(flat)
    mean = sums / total
    return mean, products / total - torch.outer(mean, mean)


class PatchWhitening(nn.Module):
    """A ``kernel`` x ``kernel`` convolution (stride 1, no padding) with 2·d filters,
    d = channels·kernel², that whiten the input's patches once :meth:`fit` has seen them.

    With the patches' mean μ and covariance Σ = U diag(λ) Uᵀ, the first d filters are the rows
    of W = diag(λ + eps)^(-1/2) Uᵀ (largest eigenvalue first), the other d their negatives
    (so that the activation after the layer loses no sign), and the bias is -Wμ (resp. +Wμ):
    on the fitted patches the first d outputs have mean 0 and covariance diag(λ / (λ + eps)),
    the identity up to the smallest eigenvalues. The filters are a buffer: never trained,
    saved with the model; the bias is a parameter and trains. Until fitted (``fitted`` is
    false) the filters are those of Σ = I: each picks one input pixel.
    """

    def __init__(self, channels: int, kernel: int, eps: float, samples: int) -> None:
        super().__init__()
        d = channels * kernel * kernel
        self.kernel, self.eps, self.samples = kernel, eps, samples
        unit = torch.eye(d).reshape(d, channels, kernel, kernel)
        self.register_buffer("weight", torch.cat([unit, -unit]))
        self.bias = nn.Parameter(torch.zeros(2 * d))
        self.register_buffer("fitted", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.weight.to(x.dtype), self.bias.to(x.dtype))

    @torch.no_grad()
    def fit(self, images: torch.Tensor, normalize: nn.Module) -> None:
        """Whiten the patches of ``samples`` training ``images`` (uint8, evenly spaced over
        the split) as the model sees them (``normalize``d)."""
        step = max(1, len(images) // self.samples)
        chosen = images[::step][: self.samples]
        inputs = torch.cat([normalize(part) for part in chosen.split(1024)]).float()
        mean, cov = patch_moments(inputs, self.kernel)
        eigenvalues, eigenvectors = torch.linalg.eigh(cov)  # ascending
        eigenvalues, eigenvectors = eigenvalues.flip(0), eigenvectors.flip(1)
        filters = eigenvectors.T / torch.sqrt(eigenvalues.clamp_min(0) + self.eps)[:, None]
        weight = torch.cat([filters, -filters])
        self.weight.copy_(weight.reshape(self.weight.shape))
        self.bias.copy_(-(weight @ mean))
        self.fitted.fill_(True)

    def extra_repr(self) -> str:
        out, channels = self.weight.shape[:2]
        return f"{channels}, {out}, kernel_size={self.kernel}, eps={self.eps}"


class ShiftBatchNorm(nn.BatchNorm2d):
    """BatchNorm2d with its scale fixed at 1 and a learned shift ``gain * shift``.

    The gain is a reparametrization: plain SGD moves the effective shift gain² times faster
    than it would a plain bias (weight decay shrinks it at the usual rate).
    """

    def __init__(self, channels: int, eps: float, momentum: float, gain: float) -> None:
        super().__init__(channels, eps=eps, momentum=momentum, affine=False)
        self.gain = gain
        self.shift = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = super().forward(x)
        return out + (self.gain * self.shift).to(out.dtype)[:, None, None]

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, shift_gain={self.gain:g}"


class Scale(nn.Module):
    """Multiplies its input by a constant."""

    def __init__(self, factor: float) -> None:
        super().__init__()
        self.factor = factor

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.factor

    def extra_repr(self) -> str:
        return f"{self.factor:g}"


def _conv(in_channels: int, out_channels: int, bias: bool) -> nn.Conv2d:
    conv = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=bias)
    with torch.no_grad():
        nn.init.dirac_(conv.weight[:in_channels])  # an identity path through the first channels
        if bias:
            conv.bias.zero_()
    return conv


def _group(in_channels: int, width: int, norm, act_layer, pool_layer, bias: bool):
    return nn.Sequential(
        OrderedDict(
            conv1=_conv(in_channels, width, bias),
            pool=pool_layer(2),
            norm1=norm(width),
            act1=act_layer(),
            conv2=_conv(width, width, bias),
            norm2=norm(width),
            act2=act_layer(),
        )
    )


@register_model("speednet")
def speednet(
    *,
    in_channels,
    num_classes,
    image_size,
    norm_layer,
    act_layer,
    pool_layer,
    drop_rate,
    widths,
    whiten_kernel,
    whiten_eps,
    whiten_samples,
    logit_scale,
    norm_scale,
    norm_shift_gain,
) -> Classifier:
    """SpeedNet for ``in_channels`` x ``image_size`` px images; nothing here reads data."""
    del image_size  # any size from the schema's minimum up

    def norm(channels: int) -> nn.Module:
        if norm_layer.kind == "batch" and not norm_scale:
            return ShiftBatchNorm(channels, norm_layer.eps, norm_layer.momentum, norm_shift_gain)
        return norm_layer(channels)

    whitening = PatchWhitening(in_channels, whiten_kernel, whiten_eps, whiten_samples)
    stages: OrderedDict[str, nn.Module] = OrderedDict(whiten=nn.Sequential(whitening, act_layer()))
    width = whitening.weight.shape[0]
    for i, out in enumerate(widths, 1):
        stages[f"group{i}"] = _group(
            width, out, norm, act_layer, pool_layer, bias=not norm_layer.enabled
        )
        width = out
    global_pool = nn.AdaptiveAvgPool2d(1) if pool_layer is nn.AvgPool2d else nn.AdaptiveMaxPool2d(1)
    stages["pool"] = global_pool
    stages["flatten"] = nn.Flatten()
    head = make_head(nn.Linear(width, num_classes, bias=False), drop_rate)
    head.append(Scale(logit_scale))
    return Classifier(nn.Sequential(stages), head, width)


def fit_to_data(model: nn.Module, images: torch.Tensor, normalize: nn.Module) -> int:
    """Fit the model's :class:`PatchWhitening` layers that are not fitted yet (a transfer
    source's stay as loaded) to the training split's ``images`` (uint8); the number fitted.

    The whitening is the model's first layer: its input is the normalized image.
    """
    fitted = 0
    for module in model.modules():
        if isinstance(module, PatchWhitening) and not bool(module.fitted):
            module.fit(images, normalize)
            fitted += 1
    return fitted

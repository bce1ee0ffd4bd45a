"""Forward+backward throughput of the model zoo, and what dlexp's wrappers cost.

Every model is trained for a few steps on one fixed batch (64 images of 3x32x32, 10
classes). The models built on torchvision are timed side by side with the identical
torchvision network called directly, interleaved in this process, and the ratio of the
throughputs (dlexp / torchvision, best step of each) must be >= 0.98: the
wrappers (named stages, swapped layers, the Classifier split) may cost at most 2 %.
Both use ``stem=imagenet``, torchvision's architecture; AlexNet's needs >= 63 px, so it
runs on 64x64 images. The CIFAR ResNets, LeNet-5 and the MLP have no torchvision twin.
With one thread (the default) a step is timed in the process's CPU time, which other
processes sharing the CPU do not inflate; ``--threads 0`` uses all cores and wall time.

    python bench/models.py [--seconds 8] [--threads N] [--models resnet18,vgg11]
"""

from __future__ import annotations

import sys
import time
from typing import TYPE_CHECKING

from _common import bench_parser

if TYPE_CHECKING:
    import torch
    from torch import nn

BATCH, SIZE, CLASSES = 64, 32, 10
MIN_RATIO = 0.98


def torchvision_twin(name: str, cfg: dict) -> nn.Module | None:
    """torchvision's network with the configuration of dlexp's default ``name`` model."""
    import torchvision

    from dlexp.models import MODELS

    arch = MODELS[name].torchvision_arch_for(cfg["norm"])
    if arch is None:
        return None
    if name == "googlenet":
        return torchvision.models.GoogLeNet(
            CLASSES, aux_logits=False, init_weights=True, dropout=cfg["dropout"]
        )
    kwargs = {"dropout": cfg["dropout"]} if name.startswith(("vgg", "alexnet")) else {}
    return torchvision.models.get_model(arch, num_classes=CLASSES, **kwargs)


CLOCK = time.perf_counter  # time.process_time with one thread (see main)


def step_seconds(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Seconds of one forward + backward pass."""
    import torch.nn.functional as F

    start = CLOCK()
    model.zero_grad(set_to_none=False)  # reuse the gradient buffers: no allocator noise
    F.cross_entropy(model(x), y).backward()
    return CLOCK() - start


def bench(name: str, seconds: float, min_rounds: int) -> tuple[str, int, float, float | None]:
    """(model, image size, dlexp images/s, throughput ratio against torchvision or None).

    Rounds (one step of each model, in alternating order) repeat for ``seconds`` and at
    least ``min_rounds`` times; the best step time of each model counts (as ``timeit``
    does: slower steps are other processes' noise).
    """
    import torch

    from dlexp.models import MODELS, build_model, default_config

    cfg = default_config(name)
    twin = torchvision_twin(name, cfg)
    size = SIZE
    if twin is not None:
        cfg["stem"] = "imagenet"
        size = 64 if MODELS[name].min_size("imagenet") > SIZE else SIZE
    torch.manual_seed(0)
    ours = build_model(cfg, in_channels=3, num_classes=CLASSES, image_size=size).train()
    x, y = torch.randn(BATCH, 3, size, size), torch.randint(0, CLASSES, (BATCH,))
    models = [ours] if twin is None else [ours, twin.train()]
    for model in models:  # warm-up: allocator, oneDNN primitives
        step_seconds(model, x, y)
    times: list[list[float]] = [[] for _ in models]
    start, r = time.perf_counter(), 0
    while r < min_rounds or time.perf_counter() - start < seconds:
        for i in range(len(models)) if r % 2 == 0 else reversed(range(len(models))):
            times[i].append(step_seconds(models[i], x, y))
        r += 1
    ratio = min(times[1]) / min(times[0]) if twin is not None else None
    return name, size, BATCH / min(times[0]), ratio


def main(argv: list[str] | None = None) -> int:
    parser = bench_parser(__doc__)
    parser.add_argument("--seconds", type=float, default=8, help="timing budget per model")
    parser.add_argument("--min-rounds", type=int, default=4, help="timed steps per model, at least")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (0: torch's)")
    parser.add_argument("--models", default="", help="comma-separated names (default: all)")
    args = parser.parse_args(argv)
    import torch

    from dlexp.models import MODELS

    global CLOCK
    if args.threads:
        torch.set_num_threads(args.threads)
    if torch.get_num_threads() == 1:  # CPU time: immune to other processes sharing the CPU
        CLOCK = time.process_time
    names = [n for n in args.models.split(",") if n] or sorted(MODELS)
    print(
        f"forward+backward, batch {BATCH}, 3 channels, {CLASSES} classes, "
        f"{torch.get_num_threads()} thread(s), best of >= {args.min_rounds} steps, "
        f"{'CPU' if CLOCK is time.process_time else 'wall'} time"
    )
    print(f"{'model':10s} {'px':>4s} {'dlexp img/s':>12s} {'vs torchvision':>15s}")
    failed = []
    start = time.perf_counter()
    for name in names:
        name, size, ips, ratio = bench(name, args.seconds, args.min_rounds)
        shown = "-" if ratio is None else f"{ratio:.3f}"
        if ratio is not None and ratio < MIN_RATIO:
            failed.append(name)
            shown += "  < 0.98"
        print(f"{name:10s} {size:4d} {ips:12.1f} {shown:>15s}", flush=True)
    print(f"total {time.perf_counter() - start:.0f} s", flush=True)
    if failed:
        print(f"wrapper overhead above 2 %: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""dlexp's cost per training step against a hand-written loop and a bare Lightning Trainer.

Three trainers run the same model (built by dlexp), on the same batches (dlexp's data module,
in memory), with the same optimizer, learning-rate schedule, loss (label smoothing), batch
size and epochs, in this process, interleaved (hand, bare, dlexp, dlexp, bare, hand per
repeat: this machine's speed drifts by 10-30 % within minutes):

* **hand**: a plain PyTorch loop; it sums the training loss and counts correct predictions
  on the device, and validates after every epoch (loss, accuracy, confusion counts);
* **bare**: a minimal LightningModule under ``Trainer(barebones=True)``, validating likewise:
  Lightning's own floor;
* **dlexp**: ``dlexp train`` with its defaults (progress bar, TensorBoard, checkpoints, every
  metric), on the CPU.

The first epoch of each run is a warm-up and is not counted. Per workload it prints, each
next to its target, from the medians over the repeats:

* the per-step overhead over the hand loop (training time per step minus the hand loop's) of
  bare Lightning and of dlexp, and their ratio (target: dlexp <= 1.5 x bare, on the MLP);
* training steps/s of dlexp / hand (target >= 0.95 on LeNet-5);
* a whole epoch, training plus validation, dlexp / hand (target <= 1.15 on LeNet-5).

Workloads (``--workloads``; the two defaults read real MNIST from ``--data DIR`` or
``$DLEXP_DATA``, DIR/MNIST/raw/*.gz, never written):

* ``mlp-mnist``: a one-hidden-layer MLP (32 units), where overhead dominates;
* ``lenet5-mnist``: LeNet-5;
* ``mlp-digits``: the tiny MLP on the embedded digits (no data needed; few steps, noisier).

All runs write into a temporary directory. Usage:
    python bench/overhead.py [--data DIR] [--repeats 2] [--epochs 3] [--workloads ...]
"""

from __future__ import annotations

import json
import os
import statistics
import tempfile
import time
from pathlib import Path

from _common import add_data_option, bench_parser, composed, data_dir, working_dir

CLOCK = "+callbacks.clock._target_=_clock.EpochClock"
COMMON = ["trainer.accelerator=cpu", "trainer.devices=1"]
WORKLOADS = {
    "mlp-mnist": ["data=mnist", "model=mlp", "model.hidden_sizes=[32]"],
    "lenet5-mnist": ["data=mnist", "model=lenet5"],
    "mlp-digits": ["model=mlp", "model.hidden_sizes=[32]", "data.batch_size=16"],
}


def _measured(epochs: list[tuple[float, float, int]]) -> dict[str, float]:
    """Seconds per training step and per epoch (train + validation), warm-up epoch left out."""
    counted = epochs[1:]
    return {
        "step": sum(t for t, _, _ in counted) / sum(n for _, _, n in counted),
        "epoch": statistics.mean(e for _, e, _ in counted),
    }


def run_dlexp(overrides: list[str], epochs: int) -> dict[str, float]:
    """``dlexp train`` in this process, timed by the bench's :class:`EpochClock`."""
    from _clock import EpochClock

    from dlexp.cli import main

    EpochClock.epochs.clear()
    with tempfile.TemporaryDirectory() as tmp:
        run_dir = Path(tmp) / "run"
        argv = ["train", f"hydra.run.dir={run_dir}", f"trainer.max_epochs={epochs}"]
        code = main([*argv, *COMMON, *overrides, CLOCK])
        assert code == 0, f"dlexp train failed ({code})"
        assert json.loads((run_dir / "metrics.json").read_text())["status"] == "completed"
    return _measured(EpochClock.epochs)


def _setup(overrides: list[str], epochs: int):
    """Model, normalizer, optimizer, schedule, loss and loaders, as dlexp builds them."""
    import pytorch_lightning as pl
    from hydra.utils import instantiate

    from dlexp.config.scheduler import scheduler_factory
    from dlexp.data import build_datamodule
    from dlexp.loss import ClassificationLoss
    from dlexp.models import build_model

    cfg = composed([*overrides, *COMMON])
    pl.seed_everything(cfg.seed, verbose=False)
    data = build_datamodule(cfg.data, seed=cfg.seed, augment=cfg.augment)
    data.setup("fit")
    model = build_model(
        cfg.model,
        in_channels=data.in_channels,
        num_classes=data.num_classes,
        image_size=data.image_size,
    )
    optimizer = instantiate(cfg.optimizer)(model.parameters())
    train_loader = data.train_dataloader()
    make_schedule = scheduler_factory(cfg.scheduler)
    schedule = make_schedule and make_schedule(
        optimizer, total_steps=len(train_loader) * epochs, max_epochs=epochs
    )
    criterion = ClassificationLoss(cfg.loss.label_smoothing)
    return model, data, optimizer, schedule, criterion, train_loader, data.val_dataloader()


def run_hand(overrides: list[str], epochs: int) -> dict[str, float]:
    """A plain PyTorch loop over the same model, batches, optimizer and schedule."""
    import torch
    import torch.nn.functional as F

    model, data, optimizer, schedule, criterion, train_loader, val_loader = _setup(
        overrides, epochs
    )
    normalize, classes = data.normalizer, data.num_classes
    per_step = schedule is not None and schedule.get("interval") == "step"
    timed = []
    for _ in range(epochs):
        started = time.perf_counter()
        model.train()
        loss_sum, correct, steps = torch.zeros(()), torch.zeros((), dtype=torch.long), 0
        for images, targets in train_loader:
            logits = model(normalize(images))
            loss = criterion(logits, targets)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            if per_step:
                schedule["scheduler"].step()
            loss_sum += loss.detach() * len(targets)
            correct += (logits.argmax(1) == targets).sum()
            steps += 1
        trained = time.perf_counter()
        model.eval()
        val_loss, counts = torch.zeros(()), torch.zeros(classes * classes, dtype=torch.long)
        with torch.no_grad():
            for images, targets in val_loader:
                logits = model(normalize(images))
                val_loss += F.cross_entropy(logits, targets, reduction="sum")
                pairs = targets * classes + logits.argmax(1)
                counts += torch.bincount(pairs, minlength=len(counts))
        float(loss_sum), int(correct), float(val_loss), counts.tolist()  # read once per epoch
        if schedule is not None and not per_step:
            schedule["scheduler"].step()
        ended = time.perf_counter()
        timed.append((trained - started, ended - started, steps))
    return _measured(timed)


def run_bare(overrides: list[str], epochs: int) -> dict[str, float]:
    """The same training under ``Trainer(barebones=True)``: Lightning's own floor."""
    import pytorch_lightning as pl
    import torch
    import torch.nn.functional as F
    from _clock import EpochClock

    model, data, optimizer, schedule, criterion, train_loader, val_loader = _setup(
        overrides, epochs
    )
    classes = data.num_classes

    class Bare(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.model, self.normalize = model, data.normalizer

        def training_step(self, batch, batch_idx):
            images, targets = batch
            return criterion(self.model(self.normalize(images)), targets)

        def on_validation_epoch_start(self) -> None:
            self.val_loss = torch.zeros(())
            self.counts = torch.zeros(classes * classes, dtype=torch.long)

        def validation_step(self, batch, batch_idx):
            images, targets = batch
            logits = self.model(self.normalize(images))
            self.val_loss += F.cross_entropy(logits, targets, reduction="sum")
            pairs = targets * classes + logits.argmax(1)
            self.counts += torch.bincount(pairs, minlength=classes**2)

        def on_validation_epoch_end(self) -> None:
            float(self.val_loss), self.counts.tolist()

        def configure_optimizers(self):
            if schedule is None:
                return optimizer
            return {"optimizer": optimizer, "lr_scheduler": schedule}

    EpochClock.epochs.clear()
    with tempfile.TemporaryDirectory() as tmp:
        trainer = pl.Trainer(
            barebones=True,
            max_epochs=epochs,
            accelerator="cpu",
            devices=1,
            callbacks=[EpochClock()],
            default_root_dir=tmp,
        )
        trainer.fit(Bare(), train_dataloaders=train_loader, val_dataloaders=val_loader)
    return _measured(EpochClock.epochs)


def report(name: str, results: dict[str, list[dict[str, float]]]) -> None:
    """One line per measure, each with its target (medians over the repeats)."""

    def median(who: str, what: str) -> float:
        return statistics.median(r[what] for r in results[who])

    hand, bare, mine = (median(w, "step") for w in ("hand", "bare", "dlexp"))
    bare_over, mine_over = (bare - hand) * 1e3, (mine - hand) * 1e3
    ratios = [
        (d["step"] - h["step"]) / max(b["step"] - h["step"], 1e-9)
        for h, b, d in zip(results["hand"], results["bare"], results["dlexp"], strict=True)
    ]
    print(
        f"{name}: per-step overhead over the hand loop ({hand * 1e3:.2f} ms/step): bare Lightning "
        f"{bare_over:.3f} ms, dlexp {mine_over:.3f} ms; dlexp / bare {mine_over / bare_over:.2f} "
        f"(repeats {', '.join(f'{r:.2f}' for r in ratios)}; target <= 1.5 on the MLP)"
    )
    print(
        f"{name}: training steps/s: hand {1 / hand:.1f}, bare {1 / bare:.1f}, "
        f"dlexp {1 / mine:.1f}; dlexp / hand {hand / mine:.3f} (target >= 0.95 on LeNet-5)"
    )
    hand_epoch, mine_epoch = median("hand", "epoch"), median("dlexp", "epoch")
    print(
        f"{name}: epoch (train + validation): hand {hand_epoch:.2f} s, bare "
        f"{median('bare', 'epoch'):.2f} s, dlexp {mine_epoch:.2f} s; dlexp / hand "
        f"{mine_epoch / hand_epoch:.3f} (target <= 1.15 on LeNet-5)",
        flush=True,
    )


def main() -> None:
    parser = bench_parser(__doc__)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3, help="per run; the first is a warm-up")
    parser.add_argument(
        "--workloads", nargs="+", choices=list(WORKLOADS), default=["mlp-mnist", "lenet5-mnist"]
    )
    add_data_option(parser)
    args = parser.parse_args()
    if args.epochs < 2:
        parser.error("--epochs must be >= 2 (the first is a warm-up)")
    needs_data = any(w.endswith("-mnist") for w in args.workloads)
    source = data_dir(args, "real MNIST (or --workloads mlp-digits)") if needs_data else None
    # Every dlexp job on the CPU hides the GPUs (see dlexp.distributed.job_scope): Lightning's
    # import makes each CUDA check of torch's optimizers load NVML, ~0.2 ms per Adam step. The
    # hand loop and bare Lightning run likewise, so that only the training machinery differs.
    os.environ["CUDA_VISIBLE_DEVICES"] = ""
    with tempfile.TemporaryDirectory() as tmp, working_dir(Path(tmp)):
        import torch

        print(f"threads: {torch.get_num_threads()}, epochs: {args.epochs}, repeats: {args.repeats}")
        runners = {"hand": run_hand, "bare": run_bare, "dlexp": run_dlexp}
        for name in args.workloads:
            overrides = list(WORKLOADS[name])
            if name.endswith("-mnist"):
                overrides += [f"data.root={source}", "data.download=false"]
            run_dlexp(overrides, 2)  # warm-up: imports, first-call allocations
            results: dict[str, list[dict[str, float]]] = {who: [] for who in runners}
            for _ in range(args.repeats):
                for who in ("hand", "bare", "dlexp", "dlexp", "bare", "hand"):
                    results[who].append(runners[who](overrides, args.epochs))
            report(name, results)


if __name__ == "__main__":
    main()

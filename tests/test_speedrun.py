"""The speed runs: speednet's patch whitening, the alternating flip, and the two experiments
``speedrun_cifar10`` / ``speedrun_mnist`` end to end (shortened, on files the tests write)."""

from __future__ import annotations

import json
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F

from dlexp import cuda_sync
from dlexp.config.model import model_config
from dlexp.data import build_datamodule
from dlexp.data.normalize import InputNormalizer
from dlexp.errors import ConfigError
from dlexp.models import build_model, fit_to_data
from dlexp.models.speednet import PatchWhitening, ShiftBatchNorm, patch_moments

from conftest import (
    QUICK,
    NaturalConfig,
    augment_config,
    compose_config,
    natural_images,
    read_metrics,
    run_inprocess,
)

WHITEN = "model.backbone.whiten.0"


def smooth_images(n: int, channels: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 images upsampled from 6x6 noise: neighbouring pixels are strongly correlated."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, channels, 6, 6, generator=g) * 255
    return F.interpolate(coarse, size=size, mode="bilinear").round().to(torch.uint8)


def speednet(channels: int, size: int, **options):
    cfg = model_config("speednet", widths=[8, 16, 16], **options)
    return build_model(cfg, in_channels=channels, num_classes=10, image_size=size)


@pytest.mark.parametrize(("channels", "size"), [(1, 28), (3, 32)])
def test_whitening_filters_whiten_the_training_patches(channels, size):
    images = smooth_images(300, channels, size)
    normalize = InputNormalizer.fit("standardize", images)
    model = speednet(channels, size)
    layer = model.backbone.whiten[0]
    assert fit_to_data(model, images, normalize) == 1 and bool(layer.fitted)

    inputs = normalize(images)
    cov = patch_moments(inputs, 2)[1]
    eigenvalues = torch.linalg.eigvalsh(cov).flip(0)
    assert eigenvalues[0] / eigenvalues[-1] > 100  # the raw patches are far from white
    d = channels * 4
    out = F.conv2d(inputs, layer.weight, layer.bias).double()
    assert out.shape[1] == 2 * d
    torch.testing.assert_close(out[:, d:], -out[:, :d])  # the negated copies
    white = out[:, :d].permute(0, 2, 3, 1).reshape(-1, d)
    zero = torch.zeros(d, dtype=torch.float64)
    torch.testing.assert_close(white.mean(0), zero, atol=1e-4, rtol=0)
    expected = torch.diag(eigenvalues / (eigenvalues + layer.eps))  # ~1, less for tiny λ
    torch.testing.assert_close(torch.cov(white.T, correction=0), expected, atol=1e-4, rtol=0)
    assert expected.diagonal()[: d // 2].min() > 0.99


def test_whitening_is_frozen_and_shifts_learn_through_their_gain():
    model = speednet(3, 32)
    layer = model.backbone.whiten[0]
    names = dict(model.named_parameters())
    assert "backbone.whiten.0.weight" not in names and not layer.weight.requires_grad
    assert "backbone.whiten.0.bias" in names  # the bias trains
    norms = [m for m in model.modules() if isinstance(m, ShiftBatchNorm)]
    assert len(norms) == 6 and all(m.weight is None and m.gain == 8.0 for m in norms)
    scaled = speednet(3, 32, norm_scale=True)
    assert not any(isinstance(m, ShiftBatchNorm) for m in scaled.modules())

    norm = norms[0].train()
    x = torch.randn(4, norm.num_features, 5, 5)
    norm(x).sum().backward()  # d(out)/d(shift) = gain per element
    torch.testing.assert_close(norm.shift.grad, torch.full_like(norm.shift, 8.0 * 4 * 25))


def test_fit_to_data_keeps_a_whitening_that_is_fitted_already():
    images = smooth_images(50, 1, 28)
    normalize = InputNormalizer.fit("standardize", images)
    source = speednet(1, 28)
    fit_to_data(source, images, normalize)
    target = speednet(1, 28)
    target.load_state_dict(source.state_dict())  # a transfer source's weights
    assert fit_to_data(target, smooth_images(50, 1, 28, seed=1), normalize) == 0
    torch.testing.assert_close(target.backbone.whiten[0].weight, source.backbone.whiten[0].weight)


def test_speednet_takes_its_minimum_size_and_refuses_empty_widths():
    assert model_config("speednet").min_size(None) == 9  # 3 halvings of (size - 1)
    assert model_config("speednet", widths=[4], whiten_kernel=3).min_size(None) == 4
    with pytest.raises(ConfigError, match=r"model\.widths"):
        model_config("speednet", widths=[])


# -- the alternating flip ---------------------------------------------------------------------

NaturalImages = natural_images(total=240, test=40)


def flipped_per_epoch(epochs: int) -> tuple[list[set[int]], int]:
    """Which training images (by index) each epoch served mirrored; how many there are."""
    aug = augment_config("basic", "augment.crop_padding=0", "augment.flip_mode=alternate")
    dm = NaturalImages(NaturalConfig(batch_size=32, val_fraction=0.2), 0, aug)
    dm.setup("fit")
    originals = dm.train_split.images
    index = {bytes(img.numpy()): (i, False) for i, img in enumerate(originals)}
    index.update({bytes(img.flip(-1).numpy()): (i, True) for i, img in enumerate(originals)})
    loader = dm.train_dataloader()
    result = []
    for epoch in range(epochs):
        loader.sampler.set_epoch(epoch)  # as Lightning does before each epoch
        seen = [index[bytes(img.numpy())] for images, _ in loader for img in images]
        assert sorted(i for i, _ in seen) == list(range(len(originals)))  # each once
        result.append({i for i, mirrored in seen if mirrored})
    return result, len(originals)


def test_alternating_flip_mirrors_exactly_the_other_images_in_the_next_epoch():
    (first, second, third), n = flipped_per_epoch(3)
    everyone = set(range(n))
    assert 0.35 < len(first) / len(everyone) < 0.65
    assert second == everyone - first and third == first


def test_alternating_flip_needs_flip_and_the_memory_loader():
    with pytest.raises(ConfigError, match=r"flip_mode=alternate: needs augment\.flip=true"):
        compose_config("augment.flip_mode=alternate")
    with pytest.raises(ConfigError, match=r"needs data\.loader=memory"):
        compose_config("augment=basic", "augment.flip_mode=alternate", "data.loader=dataloader")


# -- the experiments, end to end -----------------------------------------------------------------

SHORT = [
    *QUICK,
    "logger=none",
    "trainer.limit_train_batches=2",
    "trainer.limit_val_batches=1",
    "data.download=false",
]


def whitening_of(checkpoint) -> dict[str, torch.Tensor]:
    state = torch.load(checkpoint, weights_only=True)["state_dict"]
    return {k[len(WHITEN) + 1 :]: v for k, v in state.items() if k.startswith(WHITEN)}


def check_run(run_dir, overrides: list[str], channels: int) -> dict:
    """Completed; the checkpoints hold the whitening fitted to the run's training split,
    unchanged by training. The run's metrics."""
    metrics = read_metrics(run_dir)
    assert metrics["status"] == "completed" and metrics["epochs"] == 2
    cfg = compose_config(*overrides)
    dm = build_datamodule(cfg.data, seed=cfg.seed, augment=cfg.augment)
    dm.setup("fit")
    expected = PatchWhitening(channels, 2, cfg.model.whiten_eps, cfg.model.whiten_samples)
    expected.fit(dm.train_split.images, dm.normalizer)
    for checkpoint in (run_dir / metrics["best_checkpoint"], run_dir / "checkpoints/last.ckpt"):
        saved = whitening_of(checkpoint)
        assert bool(saved["fitted"])
        torch.testing.assert_close(saved["weight"], expected.weight, atol=1e-5, rtol=1e-5)
    return metrics


def test_speedrun_cifar10_runs_end_to_end(tmp_path):
    from test_datasets import fake_cifar10

    fake_cifar10(tmp_path / "data", per_batch=60)  # 300 training images, 60 test images
    overrides = [
        "+experiment=speedrun_cifar10",
        f"data.root={tmp_path / 'data'}",
        "data.verify_md5=false",
        "data.batch_size=16",
        "model.compile=false",  # its CPU override (compiling: tests/test_gpu_options.py)
        *SHORT,
    ]
    run_dir = tmp_path / "run"
    assert run_inprocess("train", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path) == 0
    cfg = compose_config(*overrides)
    assert (cfg.model.name, cfg.trainer.precision, cfg.augment.flip_mode) == (
        "speednet",
        "bf16-mixed",
        "alternate",
    )
    metrics = check_run(run_dir, overrides, channels=3)
    assert run_inprocess("eval", f"ckpt={run_dir}", cwd=tmp_path) == 0  # from the checkpoint
    evaluated = json.loads((run_dir / "eval.json").read_text())["test"]
    assert evaluated == pytest.approx(metrics["test"], abs=1e-5)


def test_speedrun_mnist_runs_end_to_end(tmp_path):
    from test_idx_files import fake_idx_set

    fake_idx_set(tmp_path / "data")  # 20 training images, 10 test images
    overrides = [
        "+experiment=speedrun_mnist",
        f"data.root={tmp_path / 'data'}",
        "data.val_fraction=0.5",  # one validation image per class
        *SHORT,
    ]
    run_dir = tmp_path / "run"
    assert run_inprocess("train", *overrides, f"hydra.run.dir={run_dir}", cwd=tmp_path) == 0
    check_run(run_dir, overrides, channels=1)


# -- set_sync_debug_mode around the training steps ------------------------------------------


@pytest.fixture
def fake_cuda(monkeypatch) -> SimpleNamespace:
    """CUDA "available" to :mod:`dlexp.cuda_sync`; the sync-debug mode a variable whose
    every change is recorded in ``calls``."""
    fake = SimpleNamespace(mode=0, calls=[])

    def set_mode(mode) -> None:
        fake.calls.append(mode)
        fake.mode = mode

    monkeypatch.setattr(cuda_sync, "_cuda_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "get_sync_debug_mode", lambda: fake.mode)
    monkeypatch.setattr(torch.cuda, "set_sync_debug_mode", set_mode)
    return fake


def test_sync_debug_mode_holds_during_each_optimizer_step_only(fake_cuda):
    seen = []

    class Module:
        def optimizer_step(self, *args):
            seen.append(fake_cuda.mode)
            return args

    module, callback = Module(), cuda_sync.SyncDebugMode("error")
    callback.on_fit_start(None, module)
    assert module.optimizer_step(0, 1) == (0, 1) and seen == ["error"]
    assert fake_cuda.mode == 0  # restored after the step
    callback.on_fit_end(None, module)
    assert "optimizer_step" not in vars(module)  # the class's own again


def test_sync_debug_callback_wraps_every_step_of_a_run(fake_cuda, tmp_path):
    code = run_inprocess(
        "train",
        *QUICK,
        "logger=none",
        "trainer.limit_train_batches=2",
        "+callbacks.sync_debug._target_=dlexp.cuda_sync.SyncDebugMode",
        cwd=tmp_path,
    )
    assert code == 0
    assert fake_cuda.calls == ["error", 0] * 4  # 2 epochs x 2 steps, each set and reset


def test_sync_debug_callback_does_nothing_without_cuda():
    class Module:
        def optimizer_step(self):
            return "own"

    module = Module()
    cuda_sync.SyncDebugMode().on_fit_start(None, module)
    assert "optimizer_step" not in vars(module) and module.optimizer_step() == "own"

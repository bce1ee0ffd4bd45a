"""Test-time augmentation (``test.tta``): its views, where the mirror is left out, and its
effect on ``dlexp train``'s test and ``dlexp eval`` (recorded as ``test_tta``)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch import nn

from dlexp.checkpoints import lightning_state_dict, restore_module, safe_load
from dlexp.config import TestConfig
from dlexp.data import build_datamodule
from dlexp.module import ClassificationModule
from dlexp.run_config import resolve_checkpoint, saved_config
from dlexp.tta import build_tta, shifted, tta_record, tta_views

from conftest import (
    QUICK,
    NaturalConfig,
    compose_config,
    natural_images,
    read_metrics,
    run_inprocess,
    run_python,
)

SHORT = [*QUICK, "logger=none", "trainer.limit_train_batches=2", "trainer.num_sanity_val_steps=0"]


def by_padding(images: torch.Tensor, d: int) -> torch.Tensor:
    """``images`` moved ``d`` px down and right, computed another way: zero-pad, then crop."""
    h, w = images.shape[-2:]
    p = abs(d)
    return F.pad(images.float(), (p, p, p, p))[..., p - d : p - d + h, p - d : p - d + w]


class Recorder(nn.Module):
    """Logits ``[mean of the left half, mean of the right half, 0, …]`` (``classes`` of them);
    keeps every input it sees."""

    def __init__(self, classes: int = 2) -> None:
        super().__init__()
        self.classes = classes
        self.seen: list[torch.Tensor] = []

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.seen.append(x.clone())
        left, right = x.float().chunk(2, dim=-1)
        halves = torch.stack([left.mean((1, 2, 3)), right.mean((1, 2, 3))], 1)
        return F.pad(halves, (0, self.classes - 2))


def test_a_shift_moves_the_image_and_fills_the_border_with_zeros():
    image = torch.zeros(1, 1, 8, 8, dtype=torch.uint8)
    image[0, 0, 3, 5] = 200
    image[0, 0, 0, 0] = 100  # shifted out by an up-left shift
    down_right, up_left = shifted(image, 2, 2), shifted(image, -2, -2)
    assert down_right.dtype == torch.uint8
    assert down_right[0, 0, 5, 7] == 200 and down_right[0, 0, 2, 2] == 100
    assert down_right.sum() == 300 and down_right[..., :2, :].sum() == 0  # zeros shifted in
    assert up_left[0, 0, 1, 3] == 200 and up_left.sum() == 200
    images = torch.randint(0, 256, (4, 3, 10, 12), dtype=torch.uint8)
    for d in (1, 2, 3, -1, -2, -3):
        assert torch.equal(shifted(images, d, d).float(), by_padding(images, d))


def test_flip_averages_a_model_over_the_image_and_its_mirror():
    images = torch.zeros(3, 1, 6, 6)
    images[..., :3] = 1.0  # bright left half, dark right half
    model = Recorder()
    assert torch.equal(model(images)[0], torch.tensor([1.0, 0.0]))
    tta = build_tta(TestConfig(tta="flip"), flip_ok=True)
    logits = tta(model, images)
    assert torch.equal(logits, torch.full((3, 2), 0.5))  # each half seen bright once
    assert len(model.seen) == 3  # the call above, then the image and its mirror
    assert torch.equal(model.seen[1], images) and torch.equal(model.seen[2], images.flip(-1))


def test_flip_translate_scores_six_views_with_airbench_weights():
    torch.manual_seed(0)
    images = torch.randint(0, 256, (5, 3, 16, 16), dtype=torch.uint8)
    linear = nn.Linear(3 * 16 * 16, 4)

    def forward(x):
        return linear(x.float().flatten(1))

    tta = build_tta(TestConfig(tta="flip_translate", translate=2), flip_ok=True)
    plain = forward(images)
    mirror = forward(images.flip(-1))
    moved = [by_padding(images, d) for d in (2, -2)]
    moved_scores = [(forward(x) + forward(x.flip(-1))) / 2 for x in moved]
    expected = 0.5 * (plain + mirror) / 2 + 0.5 * (moved_scores[0] + moved_scores[1]) / 2
    torch.testing.assert_close(tta(forward, images), expected)
    assert tta_record(TestConfig(tta="flip_translate"), flip_ok=True) == {
        "mode": "flip_translate",
        "mirror": True,
        "translate_px": 2,
        "views": 6,
    }


@pytest.mark.parametrize("data", ["digits", "mnist", "svhn"])
def test_no_mirror_where_a_flip_may_change_the_class_but_the_shifts_stay(data):
    flip_ok = compose_config(f"data={data}").data.flip_ok
    assert flip_ok is False
    assert build_tta(TestConfig(tta="flip"), flip_ok) is None  # the image alone: as tta=none
    assert tta_record(TestConfig(tta="flip"), flip_ok) == {
        "mode": "flip",
        "mirror": False,
        "translate_px": 0,
        "views": 1,
    }
    views = tta_views(TestConfig(tta="flip_translate", translate=3), flip_ok)
    assert [(v.mirror, v.dy, v.dx, v.weight) for v in views] == [
        (False, 0, 0, 0.5),
        (False, 3, 3, 0.25),
        (False, -3, -3, 0.25),
    ]
    assert compose_config("data=cifar10").data.flip_ok is True
    assert build_tta(TestConfig(tta="none"), flip_ok=True) is None  # tta=none: no TTA at all


def test_only_the_test_sees_the_views_never_validation():
    NaturalImages = natural_images(total=120, test=40)
    dm = NaturalImages(NaturalConfig(batch_size=20, val_fraction=0.25), 0, None)
    dm.setup("fit")
    recorder = Recorder(classes=10)
    tta = build_tta(TestConfig(tta="flip"), dm.cfg.flip_ok)
    module = ClassificationModule(recorder, nn.Identity(), 10, optimizer=None, tta=tta)
    trainer = pl.Trainer(
        accelerator="cpu", logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False,
    )  # fmt: skip
    trainer.validate(module, datamodule=dm, verbose=False)
    val_batches = [x for x, _ in dm.val_dataloader()]
    assert len(recorder.seen) == len(val_batches)  # one forward per validation batch
    for seen, batch in zip(recorder.seen, val_batches, strict=True):
        assert torch.equal(seen, batch)
    recorder.seen.clear()
    trainer.test(module, datamodule=dm, verbose=False)
    test_batches = [x for x, _ in dm.test_dataloader()]
    expected = [view for x in test_batches for view in (x, x.flip(-1))]
    assert len(recorder.seen) == len(expected) == 4
    assert all(torch.equal(seen, view) for seen, view in zip(recorder.seen, expected, strict=True))


# -- a real run: train with TTA, eval the same checkpoint with each mode ------------------------


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("tta")
    run_dir = tmp / "run"
    args = [*SHORT, "test.tta=flip_translate", f"hydra.run.dir={run_dir}"]
    assert run_inprocess("train", *args, cwd=tmp) == 0
    return run_dir


def evaluated(run_dir: Path, cwd: Path, *overrides: str) -> dict:
    assert run_inprocess("eval", f"ckpt={run_dir}", *overrides, cwd=cwd) == 0
    return json.loads((run_dir / "eval.json").read_text())


def scored_by_hand(run_dir: Path) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The run's test images' labels, plain logits and flip_translate logits on digits (no
    mirror: the image, half; its 2 px shifts down-right and up-left, a quarter each)."""
    cfg = saved_config(run_dir)
    dm = build_datamodule(cfg.data, seed=cfg.seed)
    dm.setup("test")
    ckpt = resolve_checkpoint(run_dir, "ckpt")
    state = lightning_state_dict(safe_load(ckpt, "ckpt"), ckpt, "ckpt")
    module = restore_module(
        cfg.model, state, in_channels=dm.in_channels, num_classes=dm.num_classes,
        image_size=dm.image_size, key="ckpt", shown=str(ckpt),
    )  # fmt: skip
    images = dm.test_split.images
    with torch.no_grad():
        plain = module(images)
        moved = [module(by_padding(images, d) / 255.0) for d in (2, -2)]
    return dm.test_split.labels, plain, 0.5 * plain + 0.25 * moved[0] + 0.25 * moved[1]


def confusion(labels: torch.Tensor, logits: torch.Tensor, classes: int = 10) -> list:
    pairs = labels * classes + logits.argmax(1)
    return torch.bincount(pairs, minlength=classes**2).reshape(classes, classes).tolist()


def test_tta_changes_the_test_predictions_as_specified(run, tmp_path):
    metrics = read_metrics(run)
    assert metrics["test_tta"] == {
        "mode": "flip_translate",
        "mirror": False,  # digits: a mirrored digit may be another digit
        "translate_px": 2,
        "views": 3,
    }
    labels, plain, averaged = scored_by_hand(run)
    assert confusion(labels, plain) != confusion(labels, averaged)  # TTA changes predictions

    tta = evaluated(run, tmp_path, "test.tta=flip_translate")
    assert tta["test_tta"] == metrics["test_tta"] == tta["training_test_tta"]
    assert tta["confusion_matrix"] == confusion(labels, averaged)
    for key, value in metrics["test"].items():  # eval reproduces the training run's test
        assert abs(tta["test"][key] - value) <= 1e-6, key
    assert abs(tta["test"]["test/loss"] - F.cross_entropy(averaged, labels).item()) < 1e-5

    none = evaluated(run, tmp_path, "test.tta=none")
    assert none["test_tta"] == {"mode": "none", "mirror": False, "translate_px": 0, "views": 1}
    assert none["confusion_matrix"] == confusion(labels, plain)
    assert abs(none["test"]["test/loss"] - F.cross_entropy(plain, labels).item()) < 1e-5
    assert none["test"] != tta["test"]

    flip = evaluated(run, tmp_path, "test.tta=flip")  # no mirror on digits: the image alone
    assert flip["test"] == none["test"] and flip["confusion_matrix"] == none["confusion_matrix"]
    assert flip["test_tta"]["mirror"] is False and flip["test_tta"]["views"] == 1


def test_eval_of_a_run_saved_before_the_test_node_takes_test_tta(run, tmp_path):
    old = tmp_path / "old"
    shutil.copytree(run, old)
    saved = (old / "config.yaml").read_text()
    kept = saved.split("\ntest:\n")
    rest = kept[1].split("\n", 2)  # its two keys
    (old / "config.yaml").write_text(kept[0] + "\n" + rest[2])
    assert "test:" not in (old / "config.yaml").read_text()
    result = evaluated(old, tmp_path, "test.tta=flip_translate", "test.translate=1")
    assert result["test_tta"]["translate_px"] == 1


def test_a_resume_may_change_the_final_tests_tta(run, tmp_path):
    resumed = tmp_path / "resumed"
    shutil.copytree(run, resumed)
    args = [f"resume={resumed}", "test.tta=none", "trainer.max_epochs=3"]
    assert run_inprocess("train", *args, cwd=tmp_path) == 0
    metrics = read_metrics(resumed)
    assert metrics["test_tta"]["mode"] == "none"
    assert metrics["resumes"][-1]["changed"]["test.tta"] == ["flip_translate", "none"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["train", "test.tta=bogus"], "test.tta=bogus: must be one of: none, flip, flip_translate"),
        (["train", "test.translate=0"], "test.translate=0: must be >= 1"),
        (["train", "test.tta=flip_translate", "test.translate=32"],
         "test.translate=32: must be < 32, the image size (px)"),
        (["eval", "ckpt={run}", "test.tta=mirror"], "test.tta=mirror: must be one of: none,"),
    ],
)  # fmt: skip
def test_bad_values_are_one_line_exit_2_without_torch(run, tmp_path, args, message):
    args = [a.format(run=run) for a in args]
    before = sorted(p.name for p in run.iterdir())
    code = f"from dlexp.cli import main\nprint('exit', main({args!r}))"
    done, heavy = run_python(code, cwd=tmp_path, HOME=str(tmp_path))
    assert (int(done.stdout.split()[-1]), heavy) == (2, []), done.stderr
    err = done.stderr.strip().splitlines()[:-1]  # the last line: the probe's module list
    assert len(err) == 1 and message in err[0], err
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing created
    assert sorted(p.name for p in run.iterdir()) == before

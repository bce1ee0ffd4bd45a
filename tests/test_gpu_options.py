"""GPU options on the CPU: precision, channels_last, torch.compile and contradictory settings."""

from __future__ import annotations

import pytest
import torch

from dlexp.config.model import model_config
from dlexp.models import build_model

from conftest import QUICK, only_run_dir, read_metrics, run_inprocess

ONE_EPOCH = [*QUICK, "trainer.max_epochs=1"]
FEW_BATCHES = ["trainer.limit_train_batches=4", "trainer.limit_val_batches=2"]


@pytest.mark.parametrize(
    "args,message",
    [
        (
            ["trainer.deterministic=true", "trainer.benchmark=true"],
            "trainer.benchmark=true: must be false or null with trainer.deterministic=true",
        ),
        (
            ["trainer.precision=16-mixed"],
            "trainer.precision=16-mixed: must not be float16 on the CPU",
        ),
        (["model.compile_backend=tvm"], "model.compile_backend=tvm: must be one of: inductor"),
    ],
)
def test_contradictory_or_impossible_settings_are_bad_input(tmp_path, capsys, args, message):
    code = run_inprocess("train", *args, *QUICK, cwd=tmp_path)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1, err
    assert message in err[0]
    assert not (tmp_path / "outputs").exists()


def _lenet(**options):
    torch.manual_seed(0)
    cfg = model_config("lenet5", norm="batch", **options)
    return build_model(cfg, in_channels=3, num_classes=10, image_size=32)


def test_channels_last_changes_the_layout_not_the_numbers():
    plain, nhwc = _lenet(), _lenet(channels_last=True)
    convs = [m for m in nhwc.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(
        c.weight.is_contiguous(memory_format=torch.channels_last) and c.weight.dim() == 4
        for c in convs
    )
    assert not convs[1].weight.is_contiguous()  # really NHWC, not a no-op
    images = torch.randn(4, 3, 32, 32)
    plain.eval(), nhwc.eval()
    torch.testing.assert_close(nhwc(images), plain(images), rtol=1e-4, atol=1e-5)
    assert nhwc.state_dict().keys() == plain.state_dict().keys()


def test_compile_keeps_the_model_and_its_state_dict_keys():
    compiled = _lenet(compile=True, compile_backend="eager")
    assert compiled._compiled_call_impl is not None
    assert list(compiled.state_dict()) == list(_lenet().state_dict())
    images = torch.randn(2, 3, 32, 32)
    compiled.eval()
    torch.testing.assert_close(compiled(images), _lenet().eval()(images))


def test_a_compiled_channels_last_bf16_run_trains_and_tests(tmp_path):
    """The GPU speed options together, end to end on the CPU (dynamo with the eager backend)."""
    code = run_inprocess(
        "train",
        *ONE_EPOCH,
        *FEW_BATCHES,
        "model.compile=true",
        "model.compile_backend=eager",
        "model.channels_last=true",
        "trainer.precision=bf16-mixed",
        cwd=tmp_path,
    )
    assert code == 0
    record = read_metrics(only_run_dir(tmp_path))
    assert record["status"] == "completed" and 0 <= record["test"]["test/acc"] <= 1


@pytest.mark.slow
def test_inductor_compiled_run_trains_one_epoch(tmp_path):
    """A real torch.compile (inductor, C++ code generated with the system compiler)."""
    code = run_inprocess("train", *ONE_EPOCH, "model.compile=true", cwd=tmp_path)
    assert code == 0
    record = read_metrics(only_run_dir(tmp_path))
    assert record["status"] == "completed" and record["test"]["test/acc"] > 0.2


@pytest.mark.parametrize("deterministic,expected", [(False, True), (True, False)])
def test_cudnn_benchmark_is_on_unless_deterministic(tmp_path, deterministic, expected):
    from dlexp.config.trainer import TrainerConfig
    from dlexp.trainer import build_trainer

    cfg = TrainerConfig(accelerator="cpu", deterministic=deterministic)
    build_trainer(cfg, callbacks=[], loggers=[], run_dir=tmp_path)
    try:
        assert torch.backends.cudnn.benchmark is expected
    finally:  # Lightning sets both process-wide
        torch.backends.cudnn.benchmark = False
        torch.use_deterministic_algorithms(False)

"""Penalty regularization, label smoothing and the dropout knob: exact semantics."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from dlexp.config.model import model_config
from dlexp.loss import ClassificationLoss
from dlexp.models import build_model
from dlexp.module import ClassificationModule
from dlexp.regularization import RegularizationConfig, WeightPenalty, penalized_parameters

from conftest import QUICK, only_run_dir, read_epochs, read_metrics, run_inprocess

# Unit tests call training_step without a Trainer, where self.log() only warns.
pytestmark = pytest.mark.filterwarnings("ignore:You are trying to `self.log\\(\\)`")


def tiny_model() -> nn.Sequential:
    """conv (kernel [[2]], bias 1) -> batch norm -> linear (weight [[1, -2]], bias 3)."""
    model = nn.Sequential(
        nn.Conv2d(1, 1, kernel_size=1), nn.BatchNorm2d(1), nn.Flatten(), nn.Linear(2, 1)
    )
    with torch.no_grad():
        model[0].weight.fill_(2.0)
        model[0].bias.fill_(1.0)
        model[1].weight.fill_(0.5)
        model[1].bias.fill_(-1.0)
        model[3].weight.copy_(torch.tensor([[1.0, -2.0]]))
        model[3].bias.fill_(3.0)
    return model


def grads_of_penalty(model: nn.Module, penalty: WeightPenalty) -> list:
    model.zero_grad()
    penalty().backward()
    return [None if p.grad is None else p.grad.clone() for p in model.parameters()]


def test_l2_penalty_and_gradient_equal_the_hand_computation():
    model = tiny_model()
    penalty = WeightPenalty(RegularizationConfig(l2=0.5), model, n=4)
    # (λ/n) Σ‖W‖² = 0.5/4 · (2² + 1² + 2²) = 1.125; biases and the norm layer excluded.
    assert penalty().item() == pytest.approx(1.125)
    conv_w, conv_b, bn_w, bn_b, lin_w, lin_b = grads_of_penalty(model, penalty)
    # d/dW (λ/n)‖W‖² = (2λ/n) W = 0.25 W
    assert conv_w.flatten().tolist() == pytest.approx([0.5])
    assert lin_w.flatten().tolist() == pytest.approx([0.25, -0.5])
    assert conv_b is None and bn_w is None and bn_b is None and lin_b is None


def test_l1_penalty_and_gradient_equal_the_hand_computation():
    model = tiny_model()
    penalty = WeightPenalty(RegularizationConfig(l1=0.5), model, n=4)
    # (λ/n) Σ‖W‖₁ = 0.125 · (2 + 1 + 2) = 0.625; gradient (λ/n)·sign(W)
    assert penalty().item() == pytest.approx(0.625)
    conv_w, _, _, _, lin_w, _ = grads_of_penalty(model, penalty)
    assert conv_w.flatten().tolist() == pytest.approx([0.125])
    assert lin_w.flatten().tolist() == pytest.approx([0.125, -0.125])


def test_biases_and_norm_parameters_join_only_when_asked():
    model = tiny_model()
    with_bias = WeightPenalty(RegularizationConfig(l2=0.5, include_bias=True), model, n=4)
    # + biases 1² + 3² = 10 -> 0.125 · (9 + 10)
    assert with_bias().item() == pytest.approx(0.125 * 19)
    with_norm = WeightPenalty(RegularizationConfig(l2=0.5, include_norm=True), model, n=4)
    # + batch-norm scale 0.5² and shift (-1)² -> 0.125 · (9 + 1.25)
    assert with_norm().item() == pytest.approx(0.125 * 10.25)
    _, _, bn_w, bn_b, _, lin_b = grads_of_penalty(model, with_norm)
    assert bn_w.item() == pytest.approx(0.25 * 0.5) and bn_b.item() == pytest.approx(-0.25)
    assert lin_b is None
    assert len(penalized_parameters(model, include_bias=True, include_norm=True)) == 6


def test_l1_and_l2_add_up():
    model = tiny_model()
    both = WeightPenalty(RegularizationConfig(l2=0.5, l1=0.5), model, n=4)
    assert both().item() == pytest.approx(1.125 + 0.625)


def test_training_step_minimizes_data_loss_plus_penalty():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    penalty = WeightPenalty(RegularizationConfig(l2=2.0), model, n=10)
    module = ClassificationModule(
        model, nn.Identity(), 3, lambda p: torch.optim.SGD(p, lr=0.1), penalty=penalty
    )
    images, labels = torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    loss = module.training_step((images, labels), 0)
    expected = F.cross_entropy(model(images), labels) + 0.2 * model[1].weight.pow(2).sum()
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)


def test_no_penalty_leaves_the_loss_alone():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    off = WeightPenalty(RegularizationConfig(), model, n=10)
    module = ClassificationModule(
        model, nn.Identity(), 3, lambda p: torch.optim.SGD(p, lr=0.1), penalty=off
    )
    images, labels = torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1])
    loss = module.training_step((images, labels), 0)
    assert module.penalty is None
    assert loss.item() == pytest.approx(F.cross_entropy(model(images), labels).item())


def test_label_smoothed_loss_equals_torch_cross_entropy():
    torch.manual_seed(0)
    logits, labels = torch.randn(6, 4), torch.tensor([0, 1, 2, 3, 0, 1])
    for eps in (0.0, 0.1, 0.3):
        ours = ClassificationLoss(eps)(logits, labels)
        assert ours.item() == pytest.approx(
            F.cross_entropy(logits, labels, label_smoothing=eps).item()
        )
    # by hand for eps = 0.1: targets (1 - ε)·one-hot + ε/4
    soft = F.one_hot(labels, 4).float() * 0.9 + 0.1 / 4
    by_hand = -(soft * logits.log_softmax(1)).sum(1).mean()
    assert ClassificationLoss(0.1)(logits, labels).item() == pytest.approx(by_hand.item())


def test_label_smoothing_applies_to_training_only():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(4, 3))
    module = ClassificationModule(
        model,
        nn.Identity(),
        3,
        lambda p: torch.optim.SGD(p, lr=0.1),
        criterion=ClassificationLoss(0.2),
    )
    batch = (torch.randn(5, 1, 2, 2), torch.tensor([0, 1, 2, 0, 1]))
    logits = model(batch[0])
    train_loss = module.training_step(batch, 0)
    val_loss, _ = module._step(batch, "val")
    assert train_loss.item() == pytest.approx(
        F.cross_entropy(logits, batch[1], label_smoothing=0.2).item()
    )
    assert val_loss.item() == pytest.approx(F.cross_entropy(logits, batch[1]).item())


@pytest.mark.parametrize(("value", "rate"), [(True, 0.2), (False, 0.0), (0.35, 0.35)])
def test_dropout_true_means_the_recommended_rate(value, rate):
    model = build_model(
        model_config("lenet5", dropout=value), in_channels=1, num_classes=10, image_size=32
    )
    rates = [m.p for m in model.modules() if isinstance(m, nn.Dropout)]
    assert rates == ([rate] * 3 if rate else [])


def test_penalty_of_a_run_uses_the_training_set_size(tmp_path):
    """End to end: ``train/penalty`` = (λ/n)·Σ‖W‖² with n = the training split's size."""
    # A vanishing learning rate keeps the weights at their (checkpointed) initial values.
    code = run_inprocess(
        "train", *QUICK, "trainer.max_epochs=1", "optimizer.lr=1e-12",
        "regularization.l2=3", "data.train_samples=300", cwd=tmp_path,
    )  # fmt: skip
    assert code == 0
    run = only_run_dir(tmp_path)
    n = read_metrics(run)["data"]["train"]
    assert n == 300
    logged = float(read_epochs(run)[0]["train/penalty"])
    state = torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["state_dict"]
    weights = [v for k, v in state.items() if k.startswith("model.") and k.endswith("weight")]
    expected = 3 / n * sum(float(w.pow(2).sum()) for w in weights if w.dim() >= 2)
    assert logged == pytest.approx(expected, rel=1e-4)

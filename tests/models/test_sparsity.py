"""CEN's L1 sparsity on a portion of bn2's gammas, and the exchange statistics."""

import math

import pytest
import torch
from torch.testing import assert_close

from fusionlab.models import build, exchange_statistics, l1_penalty, overall_exchanged_fraction
from fusionlab.models.exchange import ExchangeBottleneck


def cen(modalities=("rgb", "depth"), **params):
    return build("cen", backbone="resnet_mini", num_classes=5, modalities=list(modalities), **params)


def manual_penalty(model, portion):
    total = 0.0
    for block in (m for m in model.modules() if isinstance(m, ExchangeBottleneck)):
        for m, bn in enumerate(block.bn2.bns):
            size = math.floor(portion * bn.num_features + 1e-9)
            total += sum(abs(float(g)) for g in bn.weight.detach()[m * size:(m + 1) * size])
    return total


def randomize_gammas(model):
    with torch.no_grad():
        for bn in (m for m in model.modules() if isinstance(m, torch.nn.BatchNorm2d)):
            bn.weight.normal_(0, 0.1)


@pytest.mark.parametrize("modalities,portion", [(("rgb", "depth"), None), (("rgb", "depth"), 0.25),
                                                (("rgb", "depth", "hha"), None), (("rgb", "depth", "hha"), 0.1)])
def test_penalty_equals_manual_sum_over_disjoint_blocks(modalities, portion):
    model = cen(modalities, portion=portion)
    randomize_gammas(model)
    expected_portion = 1 / len(modalities) if portion is None else portion
    assert_close(float(l1_penalty(model).detach()), manual_penalty(model, expected_portion), rtol=1e-5, atol=1e-6)


def test_reference_portion_m2_rgb_first_half_depth_second_half():
    model = cen(l1_lambda=1.0)
    l1_penalty(model).backward()
    block = model.encoder.layer3[0]
    channels = block.bn2.bns[0].num_features
    rgb, depth = block.bn2.bns[0].weight.grad, block.bn2.bns[1].weight.grad
    assert torch.all(rgb[: channels // 2] != 0) and torch.all(rgb[channels // 2:] == 0)
    assert torch.all(depth[: channels // 2] == 0) and torch.all(depth[channels // 2:] != 0)
    assert block.bn1.bns[0].weight.grad is None and block.bn3.bns[0].weight.grad is None, "only bn2 is penalised"


def test_regularization_loss_is_lambda_times_penalty():
    model = cen(l1_lambda=3e-3)
    assert_close(model.regularization_loss(), 3e-3 * l1_penalty(model))
    assert build("unimodal", backbone="resnet_mini", num_classes=5, modalities=["rgb"]).regularization_loss() == 0


def test_portion_above_one_over_m_is_rejected():
    with pytest.raises(ValueError, match=r"portion must be in \(0, 1/M\]"):
        cen(("rgb", "depth", "hha"), portion=0.4)


def test_statistics_count_channels_below_threshold_per_modality():
    model = cen(threshold=0.05)
    block = model.encoder.layer1[0]
    with torch.no_grad():
        block.bn2.bns[0].weight[:4] = 0.01  # 4 of 16 rgb channels below theta
        block.bn2.bns[1].weight[:2] = -0.04  # 2 of 16 depth channels (|gamma| counts)
    stats = exchange_statistics(model)
    assert set(stats) == {f"{name}.bn2" for name in (f"encoder.layer{s}.{i}" for s in range(1, 5) for i in range(2))}
    assert stats["encoder.layer1.0.bn2"].tolist() == [4 / 16, 2 / 16]
    assert stats["encoder.layer2.0.bn2"].tolist() == [0.0, 0.0]
    total = sum(bn.num_features for b in model.modules() if isinstance(b, ExchangeBottleneck) for bn in b.bn2.bns)
    assert overall_exchanged_fraction(model) == pytest.approx(6 / total)


def test_l1_training_collapses_penalised_gammas_and_raises_exchange():
    """The observable consequence (docs/training.md): with lambda > 0 the penalised gammas shrink and exchange rises."""
    model = cen(l1_lambda=0.5, threshold=0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, target = torch.randn(2, 4, 3, 64, 64), torch.randint(0, 5, (4, 16, 16))
    before_penalty, before_fraction = float(l1_penalty(model).detach()), overall_exchanged_fraction(model)
    for _ in range(45):
        out = model(x)
        loss = sum(torch.nn.functional.cross_entropy(b, target) for b in out.branches) + model.regularization_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert float(l1_penalty(model).detach()) < 0.5 * before_penalty
    # The penalised block (half of each bn2 per modality) collapses below theta; the unpenalised half does not.
    assert before_fraction == 0.0 and 0.3 < overall_exchanged_fraction(model) <= 0.5


def test_proximal_sparsity_soft_thresholds_only_the_penalised_blocks():
    model = cen(l1_lambda=2.0, sparsity="proximal", portion=0.25)
    randomize_gammas(model)
    before = {name: bn.weight.detach().clone() for name, bn in model.named_modules()
              if isinstance(bn, torch.nn.BatchNorm2d)}
    assert float(model.regularization_loss()) == 0.0  # not in the loss: applied as a step
    model.after_optimizer_step(encoder_lr=0.05)  # amount = lr * lambda = 0.1
    for block_name, block in ((n, m) for n, m in model.named_modules() if isinstance(m, ExchangeBottleneck)):
        for m, bn in enumerate(block.bn2.bns):
            old = before[f"{block_name}.bn2.bns.{m}"]
            size = math.floor(0.25 * bn.num_features + 1e-9)
            penalised = torch.zeros_like(old, dtype=torch.bool)
            penalised[m * size:(m + 1) * size] = True
            expected = torch.where(penalised, old.sign() * (old.abs() - 0.1).clamp(min=0), old)
            assert_close(bn.weight.detach(), expected)
    untouched = [n for n in before if ".bn2." not in n]
    assert all(torch.equal(dict(model.named_modules())[n].weight.detach(), before[n]) for n in untouched)


def test_loss_sparsity_has_no_proximal_step_and_bad_modes_are_refused():
    model = cen(l1_lambda=2.0)
    randomize_gammas(model)
    state = {k: v.clone() for k, v in model.state_dict().items()}
    model.after_optimizer_step(encoder_lr=0.05)
    assert all(torch.equal(v, model.state_dict()[k]) for k, v in state.items())
    assert float(model.regularization_loss().detach()) > 0
    with pytest.raises(ValueError, match="sparsity must be one of"):
        cen(sparsity="sometimes")

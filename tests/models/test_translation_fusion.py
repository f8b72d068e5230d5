"""What the translation models' fusion does: CEN's exchange and sparsity in the U-Net, AsymFusion's asymmetry."""

import math

import pytest
import torch
from torch.testing import assert_close

from fusionlab.models import build, exchange_statistics, l1_penalty, overall_exchanged_fraction
from fusionlab.models.translation import ExchangeDownLayer, TranslationNet


def translator(name, modalities=("depth", "normal"), **params):
    return build(name, backbone="unet_mini", num_classes=3, modalities=list(modalities), task="translation", **params)


def capture(module):
    """Record ``module``'s output on each call."""
    seen = []
    module.register_forward_hook(lambda _m, _i, out: seen.append(out.detach()))
    return seen


def exchanging(model):
    return [(n, m) for n, m in model.named_modules() if isinstance(m, ExchangeDownLayer)]


def test_cen_exchanges_channels_whose_gamma_is_below_threshold():
    model = translator("cen").eval()
    layer = model.encoder.down2
    with torch.no_grad():
        layer.norm.norms[0].weight[:5] = 1e-3  # below the default threshold 1e-2: depth takes normal's channels
    normed, fused = capture(layer.norm), capture(layer)
    x = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        exchanged = model(x).branches
    own, out = normed[0].chunk(2), fused[0].chunk(2)
    assert torch.equal(out[0][:, :5], own[1][:, :5]) and torch.equal(out[0][:, 5:], own[0][:, 5:])
    assert torch.equal(out[1], own[1]), "normal's gammas are all above the threshold: it keeps its own channels"
    stats = exchange_statistics(model)
    assert stats["encoder.down2.norm"].tolist() == [5 / 32, 0.0]
    # Same weights without the exchange: the outputs differ (branch 0's exchanged features reach its decoder).
    layer.threshold = 0.0
    with torch.no_grad():
        kept = model(x).branches
    assert not torch.allclose(kept[0], exchanged[0])


def test_threshold_and_lambda_zero_exchange_nothing():
    model = translator("cen", threshold=0.0, l1_lambda=0.0)
    with torch.no_grad():
        model.encoder.down3.norm.norms[1].weight[:4] = 0.0  # even a zero gamma is kept at threshold 0
    assert overall_exchanged_fraction(model) == 0.0 and float(model.regularization_loss().detach()) == 0.0
    assert all(float(v.max()) == 0.0 for v in exchange_statistics(model).values())
    plain = TranslationNet(model.spec, 3, ["depth", "normal"])  # no fusion at all, same parameter names
    plain.load_state_dict(model.state_dict())
    x = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(model.eval()(x).branches, plain.eval()(x).branches)


def test_statistics_keys_name_the_exchanging_norms():
    model = translator("cen", ["depth", "normal", "shade"])
    assert list(exchange_statistics(model)) == [f"encoder.down{i}.norm" for i in range(2, 5)]
    assert all(v.shape == (3,) for v in exchange_statistics(model).values())


@pytest.mark.parametrize("modalities,portion", [(("depth", "normal"), None), (("depth", "normal", "shade"), 0.2)])
def test_l1_penalty_covers_exactly_the_portion_blocks_of_the_exchanging_norms(modalities, portion):
    model = translator("cen", modalities, portion=portion)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.InstanceNorm2d):
                m.weight.normal_(0, 0.1)
    expected_portion = 1 / len(modalities) if portion is None else portion
    manual = 0.0
    for _, layer in exchanging(model):
        for m, norm in enumerate(layer.norm.norms):
            size = math.floor(expected_portion * norm.num_features + 1e-9)
            manual += float(norm.weight.detach()[m * size:(m + 1) * size].abs().sum())
    penalty = l1_penalty(model)
    assert_close(float(penalty.detach()), manual, rtol=1e-5, atol=1e-6)
    penalty.backward()
    penalised = {f"{name}.norm.norms.{m}.weight" for name, layer in exchanging(model) for m in range(len(modalities))}
    for name, p in model.named_parameters():
        if name not in penalised:
            assert p.grad is None, f"{name} is not an exchanging norm's gamma"
            continue
        m = int(name.split(".")[-2])
        size = math.floor(expected_portion * p.numel() + 1e-9)
        inside = torch.zeros(p.numel(), dtype=torch.bool)
        inside[m * size:(m + 1) * size] = True
        assert torch.all(p.grad[inside] != 0) and torch.all(p.grad[~inside] == 0)


def test_proximal_step_and_loss_mode():
    model = translator("cen", l1_lambda=2.0, sparsity="proximal")
    assert float(model.regularization_loss().detach()) == 0.0
    gamma = model.encoder.down2.norm.norms[1].weight
    with torch.no_grad():
        gamma.fill_(0.5)
    model.after_optimizer_step(encoder_lr=0.1)  # soft-threshold by lr * lambda = 0.2 on normal's (second) half
    assert torch.equal(gamma[16:], torch.full((16,), 0.3)) and torch.equal(gamma[:16], torch.full((16,), 0.5))
    loss_mode = translator("cen", l1_lambda=1e-3)
    assert_close(loss_mode.regularization_loss(), 1e-3 * l1_penalty(loss_mode))


def test_l1_training_collapses_penalised_gammas_and_raises_exchange():
    model = translator("cen", l1_lambda=0.8, threshold=0.05)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05)
    x, target = torch.randn(2, 2, 3, 32, 32), torch.rand(2, 3, 32, 32) * 2 - 1
    assert overall_exchanged_fraction(model) == 0.0
    for _ in range(28):  # the L1 step, lr * lambda = 0.04 per step (< theta), takes gammas from 1 to ~0
        out = model(x)
        loss = (out.branches - target).abs().mean() + model.regularization_loss()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert 0.3 < overall_exchanged_fraction(model) <= 0.5  # the penalised half collapses, the other half does not


def fused_features(model, x):
    seen = capture(model.encoder.down2)
    with torch.no_grad():
        model(x)
    return seen[0].chunk(2)


def test_asymfusion_is_asymmetric_average_is_not():
    """AsymFusion's branch 0 fuses (own, other) differently from (other, own); a mean fuses them alike."""
    a, b = torch.randn(1, 2, 3, 32, 32), torch.randn(1, 2, 3, 32, 32)
    forward, swapped = torch.cat([a, b]), torch.cat([b, a])
    asym = translator("asymfusion").eval()
    assert not torch.allclose(fused_features(asym, forward)[0], fused_features(asym, swapped)[0])
    average = translator("average").eval()
    assert_close(fused_features(average, forward)[0], fused_features(average, swapped)[0])


def test_asymfusion_layer_keeps_its_channels_and_takes_the_others():
    model = translator("asymfusion").eval()
    layer = model.encoder.down2  # 32 channels, groups 5: keep 4 * (32 // 5) = 24
    normed, fused = capture(layer.norm), capture(layer)
    with torch.no_grad():
        model(torch.randn(2, 2, 3, 32, 32))
    own, out = normed[0].chunk(2), fused[0].chunk(2)
    assert torch.equal(out[0][:, 24:], own[1][:, 24:]) and torch.equal(out[1][:, 24:], own[0][:, 24:])
    assert not torch.equal(out[0][:, :24], own[0][:, :24]), "the other branch's shifted channels are added"

"""CEN channel exchange: golden vectors, a naive reference, theta = 0, and gradient flow."""

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from fusionlab.models import build
from fusionlab.models.backbones import get_backbone
from fusionlab.models.exchange import channel_exchange, exchanged_fraction
from fusionlab.models.segmenter import FusionSegmenter


def naive_exchange(xs: list[torch.Tensor], gammas: torch.Tensor, threshold: float) -> list[torch.Tensor]:
    """Channel by channel, modality by modality: the paper's rule written out."""
    num_modalities, channels = gammas.shape
    out = [x.clone() for x in xs]
    for m in range(num_modalities):
        for c in range(channels):
            if abs(float(gammas[m, c])) < threshold:
                others = [xs[k][:, c] for k in range(num_modalities) if k != m]
                out[m][:, c] = torch.stack(others).mean(0)
    return out


def test_matches_reference_golden_vectors(golden_dir):
    data = np.load(golden_dir / "cen_exchange_m2.npz")
    x = torch.cat([torch.from_numpy(data["x0"]), torch.from_numpy(data["x1"])])
    gammas = torch.stack([torch.from_numpy(data["gamma0"]), torch.from_numpy(data["gamma1"])])
    y = channel_exchange(x, gammas, float(data["theta"]))
    y0, y1 = y.chunk(2)
    # Copies, so exact.
    assert torch.equal(y0, torch.from_numpy(data["y0"]))
    assert torch.equal(y1, torch.from_numpy(data["y1"]))


@pytest.mark.parametrize("num_modalities", [2, 3, 4])
def test_equals_naive_rule_on_random_tensors(num_modalities):
    batch, channels = 3, 16
    xs = [torch.randn(batch, channels, 5, 6) for _ in range(num_modalities)]
    gammas = torch.randn(num_modalities, channels) * 0.05
    threshold = 0.03
    assert 0 < (gammas.abs() < threshold).float().mean() < 1, "the draw must exchange some channels, not all"
    y = channel_exchange(torch.cat(xs), gammas, threshold).chunk(num_modalities)
    for got, want in zip(y, naive_exchange(xs, gammas, threshold), strict=True):
        assert_close(got, want, rtol=1e-6, atol=1e-6)


def test_threshold_at_gamma_keeps_own_channel():
    x = torch.randn(4, 2, 3, 3)
    gammas = torch.tensor([[0.02, 0.0199], [0.02, 0.0199]])
    y = channel_exchange(x, gammas, 0.02).chunk(2)
    x0, x1 = x.chunk(2)
    assert torch.equal(y[0][:, 0], x0[:, 0]) and torch.equal(y[0][:, 1], x1[:, 1])


def test_theta_zero_exchanges_nothing():
    x = torch.randn(6, 8, 4, 4)
    gammas = torch.zeros(3, 8)  # even gamma = 0 is kept when theta = 0
    assert torch.equal(channel_exchange(x, gammas, 0.0), x)
    assert exchanged_fraction(gammas, 0.0).sum() == 0


def _randomize_bn(model: torch.nn.Module) -> None:
    """Random affine BN parameters, and some bn2 channels with tiny gammas that theta = 0.02 would exchange."""
    with torch.no_grad():
        for name, bn in model.named_modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.weight.uniform_(0.5, 1.5)
                bn.bias.normal_(0, 0.5)
                if ".bn2." in name:
                    tiny = torch.rand_like(bn.weight) < 0.3
                    bn.weight[tiny] = torch.empty(int(tiny.sum())).uniform_(-0.01, 0.01)


def test_cen_with_theta_zero_equals_unfused_network():
    modalities = ["rgb", "depth"]
    cen = build("cen", backbone="resnet_mini", num_classes=4, modalities=modalities, threshold=0.0)
    _randomize_bn(cen)
    plain = FusionSegmenter(get_backbone("resnet_mini"), 4, modalities)
    plain.load_state_dict(cen.state_dict())
    exchanging = build("cen", backbone="resnet_mini", num_classes=4, modalities=modalities, threshold=0.02)
    exchanging.load_state_dict(cen.state_dict())
    x = torch.randn(2, 2, 3, 64, 64)
    with torch.no_grad():
        outputs = [model.eval()(x).branches for model in (cen, plain, exchanging)]
    assert_close(outputs[0], outputs[1])
    assert (outputs[2] - outputs[1]).abs().max() > 1e-2, "theta above some |gamma| must change the outputs"


@pytest.mark.parametrize("num_modalities", [2, 3])
def test_gradient_reaches_other_modalities_through_exchanged_channel(num_modalities):
    x = torch.randn(num_modalities * 2, 4, 3, 3, requires_grad=True)
    gammas = torch.ones(num_modalities, 4)
    gammas[0, 1] = 0.0  # modality 0 replaces channel 1 with the others' mean
    y = channel_exchange(x, gammas, 0.02)
    y.chunk(num_modalities)[0].sum().backward()  # a loss on modality 0's branch only
    grads = x.grad.chunk(num_modalities)
    assert torch.all(grads[0][:, 1] == 0), "the replaced channel of modality 0 gets no gradient"
    assert torch.all(grads[0][:, [0, 2, 3]] == 1)
    for other in grads[1:]:
        assert_close(other[:, 1], torch.full_like(other[:, 1], 1 / (num_modalities - 1)))
        assert torch.all(other[:, [0, 2, 3]] == 0)


def test_gradient_reaches_every_modality_bn_in_a_block():
    model = build("cen", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"])
    block = model.encoder.layer2[0]
    with torch.no_grad():
        block.bn2.bns[0].weight[:4] = 0.0  # rgb's first 4 bn2 channels fall below theta
    out = model(torch.randn(2, 2, 3, 64, 64))
    out.branches[0].sum().backward()  # only the rgb branch's loss
    depth_bn = block.bn2.bns[1]
    assert depth_bn.weight.grad[:4].abs().sum() > 0, "depth's bn2 learns from rgb's loss via exchanged channels"
    assert depth_bn.bias.grad[:4].abs().sum() > 0
    assert torch.all(depth_bn.weight.grad[4:] == 0), "kept channels do not leak across modalities at this layer"

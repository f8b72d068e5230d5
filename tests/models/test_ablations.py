"""The papers' ablations as registered models: CEN without exchange, with a random fixed channel set, exchanging only
in the penalised portion; AsymFusion with one of its two operations. (Forward/backward for M = 2 and 3: the
registry-driven tests in test_registry.py.)"""

import math

import pytest
import torch

from fusionlab.models import build, exchange_statistics, overall_exchanged_fraction
from fusionlab.models.asym import channel_shuffle, kept_channels, pixel_shift
from fusionlab.models.asymfusion import AsymBottleneck
from fusionlab.models.exchange import ExchangeBottleneck, penalised_block
from fusionlab.models.modal import mean_of_others, split_modalities
from fusionlab.models.sparsity import exchanging_layers

MODALITIES = {2: ["rgb", "depth"], 3: ["rgb", "depth", "hha"]}


def model(name, count=2, **params):
    return build(name, backbone="resnet_mini", num_classes=5, modalities=MODALITIES[count], **params)


def collapse_every_gamma(net):
    with torch.no_grad():
        for layer in (m for m in net.modules() if isinstance(m, ExchangeBottleneck)):
            for bn in layer.bn2.bns:
                bn.weight.zero_()


def train_steps(net, steps=3):
    optimizer = torch.optim.SGD(net.parameters(), lr=0.5)
    for _ in range(steps):
        out = net(torch.randn(len(net.modalities), 2, 3, 32, 32))
        optimizer.zero_grad()
        (out.branches.square().mean() + net.regularization_loss()).backward()
        optimizer.step()


@pytest.mark.parametrize("count", [2, 3])
@pytest.mark.parametrize("fraction", [None, 0.2])
def test_random_exchange_exchanges_exactly_the_requested_fraction_of_disjoint_fixed_channels(count, fraction):
    net = model("cen_random_exchange", count, fraction=fraction)
    wanted = 1 / count if fraction is None else fraction
    layers = exchanging_layers(net)
    assert layers
    before = {name: layer.exchanged().clone() for name, layer in layers}
    for name, layer in layers:
        channels = layer.exchange_norm.gammas().shape[1]
        exchanged = layer.exchanged()
        assert exchanged.sum(1).tolist() == [math.floor(wanted * channels + 1e-9)] * count, name
        assert exchanged.sum(0).max() <= 1, f"{name}: a channel exchanged by two modalities"
    train_steps(net)  # gamma moves; the set does not
    collapse_every_gamma(net)
    assert all(torch.equal(layer.exchanged(), before[name]) for name, layer in layers)
    expected = sum(math.floor(wanted * layer.exchange_norm.gammas().shape[1] + 1e-9) * count for _, layer in layers)
    total = sum(layer.exchange_norm.gammas().numel() for _, layer in layers)
    assert overall_exchanged_fraction(net) == pytest.approx(expected / total)


def test_random_exchange_replaces_its_set_by_the_other_modality_and_is_saved_with_the_weights():
    net = model("cen_random_exchange", fraction=0.25, seed=3).eval()
    layer = net.encoder.layer2[0]
    exchanged = layer.exchanged()
    out = torch.randn(2 * 2, exchanged.shape[1], 4, 4)
    mixed = split_modalities(layer.exchange(out), 2)
    own = split_modalities(out, 2)
    for m in range(2):
        assert torch.equal(mixed[m][:, exchanged[m]], own[1 - m][:, exchanged[m]])
        assert torch.equal(mixed[m][:, ~exchanged[m]], own[m][:, ~exchanged[m]])

    other_seed = model("cen_random_exchange", fraction=0.25, seed=4)
    assert not torch.equal(other_seed.encoder.layer2[0].exchanged(), exchanged), "the seed draws the set"
    same_seed = model("cen_random_exchange", fraction=0.25, seed=3)
    assert torch.equal(same_seed.encoder.layer2[0].exchanged(), exchanged)
    other_seed.load_state_dict(net.state_dict())
    assert torch.equal(other_seed.encoder.layer2[0].exchanged(), exchanged), "a reloaded model exchanges the same set"


def test_without_exchange_nothing_is_exchanged_even_with_every_gamma_at_zero():
    net = model("cen_no_exchange")
    collapse_every_gamma(net)
    assert overall_exchanged_fraction(net) == 0.0
    assert all(float(fraction.sum()) == 0.0 for fraction in exchange_statistics(net).values())
    assert float(net.regularization_loss().detach()) == 0.0, "no sparsity penalty"
    assert net.fusion_points() == ["logits (alpha ensemble)"], "the modalities meet only in the ensemble"
    x = torch.randn(2, 2, 3, 32, 32)
    net.eval()
    with torch.no_grad():
        alone = net(torch.stack([x[0], torch.zeros_like(x[1])])).branches[0]
        together = net(x).branches[0]
    torch.testing.assert_close(alone, together, msg="the RGB branch must not see depth")


def test_cen_exchanges_every_collapsed_channel_but_the_penalised_variant_only_its_own_block():
    everywhere, penalised = model("cen"), model("cen_penalised_exchange")
    for net in (everywhere, penalised):
        collapse_every_gamma(net)
    assert overall_exchanged_fraction(everywhere) == 1.0
    for _, layer in exchanging_layers(penalised):
        channels = layer.exchange_norm.gammas().shape[1]
        expected = torch.zeros(2, channels, dtype=torch.bool)
        for m in range(2):
            expected[m, penalised_block(channels, m, layer.portion)] = True
        assert torch.equal(layer.exchanged(), expected)


def middle_by_hand(block: AsymBottleneck, out: torch.Tensor, shuffle: bool, shift: bool) -> torch.Tensor:
    keep = kept_channels(out.shape[1], block.groups)
    received = mean_of_others(split_modalities(pixel_shift(out, keep, block.offsets), 2)).flatten(0, 1)
    x = channel_shuffle(out, 2, keep) if shuffle else out
    x = torch.relu(block.bn2(block.conv2(x)))
    x = x + received if shift else x
    return channel_shuffle(x, 2, keep) if shuffle else x


@pytest.mark.parametrize(("name", "shuffle", "shift"), [("asymfusion", True, True),
                                                        ("asymfusion_shuffle_only", True, False),
                                                        ("asymfusion_shift_only", False, True)])
def test_asymfusion_ablations_apply_only_their_operation(name, shuffle, shift):
    net = model(name).eval()
    blocks = [m for m in net.modules() if isinstance(m, AsymBottleneck)]
    assert len(blocks) == 4
    out = torch.randn(4, blocks[1].conv2.in_channels, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(blocks[1].middle(out), middle_by_hand(blocks[1], out, shuffle, shift))
        others = [middle_by_hand(blocks[1], out, s, t) for s, t in ((True, True), (True, False), (False, True))
                  if (s, t) != (shuffle, shift)]
    assert all(not torch.allclose(blocks[1].middle(out), other) for other in others)

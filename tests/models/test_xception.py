"""Aligned Xception + DeepLabv3+ in the shared-conv / private-BN form: strides, where CEN and AsymFusion fuse, and
the parameter counts of the published layout, counted independently of the modules."""

import pytest
import torch

from fusionlab.models import build, exchange_statistics, get_backbone, l1_penalty, summarize
from fusionlab.models.asym import channel_shuffle, kept_channels, pixel_shift
from fusionlab.models.asymfusion import AsymXceptionBlock
from fusionlab.models.exchange import ExchangeXceptionBlock
from fusionlab.models.modal import mean_of_others, split_modalities
from fusionlab.models.segmenter import set_output_stride
from fusionlab.models.sparsity import penalised_gammas
from fusionlab.models.xception import XceptionEncoder, XceptionSpec, unit_geometry
from xception_layout import XCEPTION_71_ENTRY, tensorflow_layout_parameters

MINI = "xception_mini"


def bn_affine_parameters(model: torch.nn.Module) -> int:
    return sum(p.numel() for name, p in model.named_parameters() if ".bns.0." in name)


def test_xception65_unimodal_count_is_the_tensorflow_layout():
    kwargs = dict(backbone="xception65", num_classes=19, modalities=["rgb", "disparity"])
    alpha = 1  # the ensemble weight every fusionlab segmenter has (one branch here), as in the ResNet counts
    assert summarize("unimodal", **kwargs).parameters == tensorflow_layout_parameters(19) + alpha


def test_xception71_count_is_the_papers_43_48m():
    """The AsymFusion paper's 43.48M for DeepLabv3+ "Xception-65" is DeepLabv3+ on TensorFlow's Xception-71."""
    kwargs = dict(backbone="xception71", num_classes=19, modalities=["rgb"])
    count = summarize("unimodal", **kwargs).parameters
    assert count == tensorflow_layout_parameters(19, XCEPTION_71_ENTRY) + 1
    assert round(count / 1e6, 2) == 43.48


def test_xception71_takes_low_level_features_at_stride_4():
    spec = get_backbone("xception71").scaled(1 / 16)
    with torch.no_grad():
        low, deep = XceptionEncoder(spec, num_modalities=1).eval()(torch.randn(1, 3, 64, 64))
    assert low.shape[1:] == (spec.low_level_channels, 16, 16) and deep.shape[1:] == (spec.out_channels, 4, 4)


def test_every_modality_adds_one_set_of_bn_affine_parameters_and_one_alpha():
    kwargs = dict(backbone="xception65", num_classes=19)
    one = summarize("unimodal", modalities=["rgb"], **kwargs).parameters
    with torch.device("meta"):
        unimodal = build("unimodal", modalities=["rgb"], **kwargs)
    per_modality = bn_affine_parameters(unimodal) + 1  # one alpha entry per branch
    for name in ("cen", "asymfusion"):
        two = summarize(name, modalities=["rgb", "disparity"], **kwargs).parameters
        three = summarize(name, modalities=["rgb", "disparity", "hha"], **kwargs).parameters
        assert two - one == three - two == per_modality


def test_output_stride_16_and_8_use_the_same_weights():
    spec = get_backbone(MINI)
    encoder = XceptionEncoder(spec, num_modalities=2).eval()
    x = torch.randn(4, 3, 64, 96)
    low, deep = encoder(x)
    assert low.shape == (4, spec.low_level_channels, 16, 24)
    assert deep.shape == (4, spec.out_channels, 4, 6)
    weights = {name: p.clone() for name, p in encoder.named_parameters()}
    encoder.set_output_stride(8)
    low8, deep8 = encoder(x)
    assert deep8.shape == (4, spec.out_channels, 8, 12) and torch.equal(low8, low)
    assert all(torch.equal(p, weights[name]) for name, p in encoder.named_parameters())
    encoder.set_output_stride(16)
    assert torch.equal(encoder(x)[1], deep)


def test_strides_become_dilations_as_tensorflow_stacks_them():
    units = XceptionSpec().units()
    assert [u.flow for u in units] == ["entry"] * 3 + ["middle"] * 16 + ["exit"] * 2
    at16 = unit_geometry(units, 16)
    assert at16[:3] == [(2, 1)] * 3 and set(at16[3:19]) == {(1, 1)} and at16[19:] == [(1, 1), (1, 2)]
    at8 = unit_geometry(units, 8)
    assert at8[:3] == [(2, 1), (2, 1), (1, 1)] and set(at8[3:19]) == {(1, 2)} and at8[19:] == [(1, 2), (1, 4)]
    with pytest.raises(ValueError, match="output_stride must be one of"):
        unit_geometry(units, 4)


def test_segmenter_on_xception_predicts_at_stride_4_at_both_output_strides():
    model = build("cen", backbone=MINI, num_classes=5, modalities=["rgb", "depth"]).eval()
    x = torch.randn(2, 2, 3, 64, 64)
    with torch.no_grad():
        at16 = model(x).ensemble
        set_output_stride(model, 8)
        at8 = model(x).ensemble
    assert at16.shape == at8.shape == (2, 5, 16, 16)
    assert not torch.equal(at16, at8)  # dilated, the same weights see a different field
    with pytest.raises(ValueError, match="only the Xception backbones"):
        set_output_stride(build("cen", backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"]), 8)


def test_cen_exchanges_after_the_middle_separable_convs_bn_in_every_unit():
    model = build("cen", backbone=MINI, num_classes=3, modalities=["rgb", "depth"], threshold=0.02).eval()
    blocks = [m for m in model.modules() if isinstance(m, ExchangeXceptionBlock)]
    assert len(blocks) == len(get_backbone(MINI).units())
    block = blocks[3]  # a middle-flow unit
    with torch.no_grad():
        block.bn2.bns[0].weight[:2] = 0.0  # rgb's channels 0, 1 now exchange: they take depth's values
    out = torch.randn(4, block.conv2.depthwise.in_channels, 6, 6)
    with torch.no_grad():
        norm = split_modalities(block.bn2(block.conv2(torch.relu(out))), 2)
        fused = split_modalities(block.middle(out), 2)
    torch.testing.assert_close(fused[0][:, :2], norm[1][:, :2])
    torch.testing.assert_close(fused[0][:, 2:], norm[0][:, 2:])
    torch.testing.assert_close(fused[1], norm[1])
    statistics = exchange_statistics(model)
    assert list(statistics)[3] == "encoder.middle.0.bn2"
    assert statistics["encoder.middle.0.bn2"][0] == pytest.approx(2 / block.bn2.bns[0].num_features)


def test_cen_penalises_half_of_each_middle_bn_per_modality():
    model = build("cen", backbone=MINI, num_classes=3, modalities=["rgb", "depth"])
    blocks = [m for m in model.modules() if isinstance(m, ExchangeXceptionBlock)]
    expected = sum(2 * (block.bn2.bns[0].num_features // 2) for block in blocks)
    assert sum(g.numel() for g in penalised_gammas(model)) == expected
    assert l1_penalty(model).item() == pytest.approx(expected)  # BN gammas start at 1


def test_asymfusion_fuses_the_last_unit_of_each_flow():
    model = build("asymfusion", backbone=MINI, num_classes=3, modalities=["rgb", "depth"]).eval()
    spec = get_backbone(MINI)
    assert model.fusion_points() == ["encoder.entry.2", f"encoder.middle.{spec.middle_blocks - 1}", "encoder.exit.1"]
    block = model.encoder.middle[-1]
    assert isinstance(block, AsymXceptionBlock)
    out = torch.randn(4, block.conv2.depthwise.in_channels, 6, 6)
    keep = kept_channels(out.shape[1], block.groups)
    with torch.no_grad():
        x = block.bn2(block.conv2(torch.relu(channel_shuffle(out, 2, keep))))
        x = x + mean_of_others(split_modalities(pixel_shift(out, keep, block.offsets), 2)).flatten(0, 1)
        torch.testing.assert_close(block.middle(out), channel_shuffle(x, 2, keep))


def test_image_pooling_needs_two_samples_per_modality_in_training():
    model = build("cen", backbone=MINI, num_classes=3, modalities=["rgb", "depth"])
    with pytest.raises(ValueError, match="at least 2 samples per modality"):
        model(torch.randn(2, 1, 3, 32, 32))

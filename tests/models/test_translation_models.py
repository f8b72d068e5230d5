"""Registry-driven: every registered translation model runs forward and backward at tiny size, for M = 2 and 3, on
every tiny translation backbone."""

import pytest
import torch

from fusionlab.models import (
    FusionModel,
    FusionOutput,
    ModalInstanceNorm2d,
    build,
    count_parameters,
    get_translation_backbone,
    list_models,
)
from tiny_backbones import tiny_pairs

MODALITY_SETS = {2: ["depth", "normal"], 3: ["depth", "normal", "shade"]}
PAPERS_MODELS = ["asymfusion", "attention", "average", "cen", "concat", "unimodal"]
ONE_BRANCH = ("unimodal", "concat")


def translator(name, modalities=("depth", "normal"), backbone="unet_mini", **params):
    return build(name, backbone=backbone, num_classes=3, modalities=list(modalities), task="translation", **params)


def test_registry_lists_the_translation_models():
    assert set(PAPERS_MODELS) <= set(list_models(task="translation"))


@pytest.mark.parametrize("num_modalities", sorted(MODALITY_SETS))
@pytest.mark.parametrize(("name", "backbone"), tiny_pairs("translation"))
def test_forward_backward_every_translation_model(name, backbone, num_modalities):
    modalities = MODALITY_SETS[num_modalities]
    model = translator(name, modalities, backbone)
    assert isinstance(model, FusionModel)
    batch, size = 2, 2 ** get_translation_backbone(backbone).levels  # 1 x 1 at the innermost layer
    x = torch.randn(num_modalities, batch, 3, size, size)
    out = model(x)
    assert isinstance(out, FusionOutput)
    branches = 1 if name in ONE_BRANCH else num_modalities
    assert out.branches.shape == (branches, batch, 3, size, size)
    assert out.ensemble.shape == (batch, 3, size, size)
    assert len(model.branch_names()) == branches
    assert out.branches.abs().max() <= 1 and out.ensemble.abs().max() <= 1, "tanh output"
    loss = out.branches.square().mean() + out.ensemble.square().mean() + model.regularization_loss()
    loss.backward()
    # Every parameter gets a gradient. Some are exactly 0 by construction (and still finite): the biases of convs
    # followed by an InstanceNorm (the mean removes them; kept as in pix2pix and the CEN reference), and a
    # one-branch model's alpha (softmax of one entry is constant).
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters that got no gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    assert model.decoder.up1.conv.weight.grad.abs().sum() > 0 and model.encoder.down1.conv.weight.grad.abs().sum() > 0

    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first.branches, second.branches), "eval mode must be deterministic (no dropout)"


def test_dropout_on_the_three_innermost_up_layers_only_in_training():
    model = translator("cen")
    with_dropout = [name for name, m in model.named_modules() if isinstance(m, torch.nn.Dropout)]
    assert with_dropout == ["decoder.up1.dropout", "decoder.up2.dropout", "decoder.up3.dropout"]
    x = torch.randn(2, 2, 3, 32, 32)
    with torch.no_grad():
        assert not torch.equal(model(x).branches, model(x).branches), "dropout is active in training"


def test_alpha_ensemble_is_softmax_weighted_detached_branches():
    model = translator("asymfusion").eval()
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([0.3, -1.2]))
    out = model(torch.randn(2, 2, 3, 32, 32))
    weights = torch.softmax(torch.tensor([0.3, -1.2]), 0)
    torch.testing.assert_close(out.ensemble, weights[0] * out.branches[0] + weights[1] * out.branches[1])
    out.ensemble.sum().backward()
    trained = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert trained == ["alpha"], "the ensemble loss trains alpha only"


def one_modality_norm_parameters(model):
    """Parameters of one modality's copy of every per-modality norm."""
    return sum(count_parameters(m.norms[0]) for m in model.modules() if isinstance(m, ModalInstanceNorm2d))


@pytest.mark.parametrize("name", [n for n in list_models(task="translation") if n not in ONE_BRANCH])
def test_convs_are_shared_only_norms_alpha_and_attention_are_extra(name):
    fused, single = translator(name), translator("unimodal")
    attention = sum(count_parameters(m.attention) for m in fused.modules() if hasattr(m, "attention"))
    assert (attention > 0) == (name == "attention")
    per_modality = one_modality_norm_parameters(single)  # one more copy for the second modality
    extra_alpha = fused.alpha.numel() - single.alpha.numel()
    assert count_parameters(fused) - count_parameters(single) == per_modality + extra_alpha + attention


def test_concat_differs_from_unimodal_only_by_the_first_conv_inputs():
    concat, single = translator("concat", ["depth", "normal", "shade"]), translator("unimodal")
    first = single.encoder.down1.conv
    assert count_parameters(concat) - count_parameters(single) == 2 * 3 * first.out_channels * 4 * 4
    assert concat.branch_names() == ["depth+normal+shade"]
    assert concat.fusion_points() == ["input (channel concatenation)"]


def test_unimodal_reads_its_chosen_modality():
    model = translator("unimodal", modality="normal").eval()
    x = torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        from_normal = model(x).branches
        changed = x.clone()
        changed[0] = torch.randn_like(x[0])
        assert torch.equal(model(changed).branches, from_normal)
    assert model.branch_names() == ["normal"] and model.fusion_points() == []


def test_fusion_points_are_the_down_layers_with_a_norm():
    layers = [f"encoder.down{i}" for i in range(2, 5)]  # unet_mini: 5 levels
    assert translator("cen").fusion_points() == [f"{layer}.norm" for layer in layers]
    for name in ("asymfusion", "average", "attention"):
        assert translator(name).fusion_points() == layers


def test_encoder_decoder_split_for_the_optimiser():
    from fusionlab.train.optim import split_parameters

    model = translator("cen")
    encoder, rest = split_parameters(model)
    assert {id(p) for p in encoder} == {id(p) for p in model.encoder.parameters()}
    assert {id(p) for p in rest} == {id(p) for p in model.decoder.parameters()} | {id(model.alpha)}


def test_wrong_input_size_names_the_size_and_the_divisor():
    model = translator("cen")
    with pytest.raises(ValueError, match=r"5 levels needs H and W divisible by 2\*\*5 = 32, got H x W = 48 x 40"):
        model(torch.randn(2, 1, 3, 48, 40))
    with pytest.raises(ValueError, match=r"expects input \[M, B, C, H, W\] = \[2, 'B', 3, 'H', 'W'\]"):
        model(torch.randn(3, 1, 3, 32, 32))


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="unknown translation backbone 'resnet50'.*'pix2pix_unet'"):
        translator("cen", backbone="resnet50")
    with pytest.raises(ValueError, match="unknown model 'early_concat' for task 'translation'.*'concat'"):
        translator("early_concat")
    for name in ("cen", "asymfusion", "average", "attention"):
        with pytest.raises(ValueError, match=f"{name} needs at least 2 modalities"):
            translator(name, ["depth"])
    with pytest.raises(ValueError, match=r"portion must be in \(0, 1/M\]"):
        translator("cen", ["depth", "normal", "shade"], portion=0.4)
    with pytest.raises(ValueError, match="shuffle_groups must be >= 2"):
        translator("asymfusion", shuffle_groups=1)

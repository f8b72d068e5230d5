"""The Mix Transformer backbone in fusionlab's multimodal form: the registered baselines on it train for M = 2 and 3,
its weights are shared and its LayerNorms private, the stacked run equals a per-modality loop, and its sizes equal
the TokenFusion reference's (tests/models/data/tokenfusion_counts.json, counted from the reference's own modules)."""

import json
from pathlib import Path

import pytest
import torch

from fusionlab.models import build
from fusionlab.models.backbones import get_backbone
from fusionlab.models.mit import MiTEncoder, ModalLayerNorm
from fusionlab.models.modal import set_modality_loop
from fusionlab.models.segmenter import FusionSegmenter

REFERENCE_COUNTS = json.loads((Path(__file__).parent / "data" / "tokenfusion_counts.json").read_text())["counts"]
MODALITIES = ["rgb", "depth", "hha"]


def parameters(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("num_modalities", [2, 3])
@pytest.mark.parametrize("name", ["unimodal", "early_concat", "late_fusion"])
def test_every_baseline_on_mit_trains_for_two_and_three_modalities(name, num_modalities):
    modalities = MODALITIES[:num_modalities]
    model = build(name, backbone="mit_mini", num_classes=5, modalities=modalities)
    x = torch.randn(num_modalities, 2, 3, 64, 96)
    out = model(x)
    branches = 1 if name in ("unimodal", "early_concat") else num_modalities
    assert out.branches.shape == (branches, 2, 5, 16, 24) and out.ensemble.shape == (2, 5, 16, 24)  # stride 4
    (out.branches.logsumexp(2).mean() + out.ensemble.logsumexp(1).mean()).backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), key


@pytest.mark.parametrize("backbone", sorted(REFERENCE_COUNTS))
def test_sizes_equal_the_tokenfusion_references_without_its_score_predictors(backbone):
    """The reference's WeTr (two modalities, 40 classes) is this segmenter plus TokenFusion's score predictors."""
    reference = REFERENCE_COUNTS[backbone]
    with torch.device("meta"):
        model = FusionSegmenter(get_backbone(backbone), 40, ["rgb", "depth"])
    assert parameters(model.encoder) == reference["encoder"] - reference["score_predictors"]
    assert parameters(model.decoder) == reference["decoder"]
    assert parameters(model) == reference["model"] - reference["score_predictors"]


def test_a_modality_adds_only_layernorms():
    spec = get_backbone("mit_b1")
    with torch.device("meta"):
        one, two, three = (MiTEncoder(spec, m) for m in (1, 2, 3))
    norms = sum(parameters(module) for module in one.modules() if isinstance(module, ModalLayerNorm))
    assert parameters(two) - parameters(one) == parameters(three) - parameters(two) == norms


def test_the_stacked_modalities_equal_a_per_modality_loop_and_each_keeps_its_own_norms():
    torch.manual_seed(0)
    encoder = MiTEncoder(get_backbone("mit_mini"), num_modalities=2).eval()
    with torch.no_grad():
        for module in encoder.modules():  # private norms that differ, so that mixing them up would show
            if isinstance(module, ModalLayerNorm):
                for norm in module.norms:
                    norm.weight.uniform_(0.5, 1.5)
                    norm.bias.uniform_(-0.5, 0.5)
    x = torch.randn(2 * 2, 3, 64, 96)
    with torch.no_grad():
        stacked = encoder(x)
        set_modality_loop(encoder, True)
        looped = encoder(x)
        single = MiTEncoder(get_backbone("mit_mini"), num_modalities=1).eval()
        state = {key.replace("norms.1.", "norms.0."): value for key, value in encoder.state_dict().items()
                 if "norms.0." not in key}
        single.load_state_dict(state)
        second = single(x[2:])  # modality 1 alone, through its own norms and the shared weights
    for a, b, c in zip(stacked, looped, second, strict=True):
        torch.testing.assert_close(a, b)
        torch.testing.assert_close(a[2:], c)
    assert stacked[0].shape[1:] == (16, 16, 24) and stacked[3].shape[1:] == (64, 2, 3)


def test_modal_layernorm_is_one_layernorm_per_modality():
    norm = ModalLayerNorm(8, num_modalities=3)
    with torch.no_grad():
        for layer in norm.norms:
            layer.weight.normal_()
            layer.bias.normal_()
    x = torch.randn(3 * 2, 5, 8)
    expected = torch.cat([layer(part) for layer, part in zip(norm.norms, x.chunk(3), strict=True)])
    torch.testing.assert_close(norm(x), expected)


def test_cnn_fusion_is_refused_on_a_transformer():
    with pytest.raises(ValueError, match="model 'cen' does not run on backbone 'mit_mini' \\(a mit\\)"):
        build("cen", backbone="mit_mini", num_classes=5, modalities=["rgb", "depth"])
    with pytest.raises(ValueError, match="LayerNorms .* fuse its tokens with tokenfusion"):  # below the registry too
        FusionSegmenter(get_backbone("mit_mini"), 5, ["rgb", "depth"], shared_bn=True)

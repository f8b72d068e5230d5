"""Registry-driven: every registered model runs forward and backward at tiny size, for M = 2 and M = 3, on each
backbone family it runs on: a ResNet under RefineNet, an Xception under DeepLabv3+, a Mix Transformer under the
all-MLP decoder."""

from types import SimpleNamespace

import pytest
import torch

from fusionlab.models import FusionModel, FusionOutput, build, list_models, register_model, runs_on

MODALITY_SETS = {2: ["rgb", "depth"], 3: ["rgb", "depth", "hha"]}
EXPECTED_MODELS = ["asymfusion", "asymfusion_shift_only", "asymfusion_shuffle_only", "cen", "cen_no_exchange",
                   "cen_penalised_exchange", "cen_random_exchange", "early_concat", "late_fusion", "shared_bn",
                   "tokenfusion", "unimodal"]
TINY = ["resnet_mini", "xception_mini", "mit_mini"]
RUNS_ON = [(name, backbone) for name in list_models() for backbone in TINY if runs_on(name, backbone)]


def test_registry_lists_the_papers_models_and_baselines():
    assert list_models() == EXPECTED_MODELS
    assert list_models("*fusion") == ["asymfusion", "late_fusion", "tokenfusion"]


def test_the_cnn_fusion_models_run_on_the_cnns_tokenfusion_on_the_transformer_and_the_baselines_on_all():
    families = {name: [backbone for backbone in TINY if runs_on(name, backbone)] for name in list_models()}
    assert families["tokenfusion"] == ["mit_mini"]
    assert families["unimodal"] == families["early_concat"] == families["late_fusion"] == TINY
    assert families["cen"] == families["asymfusion"] == ["resnet_mini", "xception_mini"]
    with pytest.raises(ValueError, match="model 'cen' does not run on backbone 'mit_mini' .* resnet or xception"):
        build("cen", backbone="mit_mini", num_classes=7, modalities=["rgb", "depth"])


@pytest.mark.parametrize("num_modalities", sorted(MODALITY_SETS))
@pytest.mark.parametrize(("name", "backbone"), RUNS_ON)
def test_forward_backward_every_model(name, num_modalities, backbone):
    modalities = MODALITY_SETS[num_modalities]
    model = build(name, backbone=backbone, num_classes=7, modalities=modalities)
    assert isinstance(model, FusionModel)
    batch, height, width = 2, 64, 48
    x = torch.randn(num_modalities, batch, 3, height, width)
    out = model(x)
    assert isinstance(out, FusionOutput)
    expected_branches = 1 if name in ("unimodal", "early_concat") else num_modalities
    assert out.branches.shape == (expected_branches, batch, 7, height // 4, width // 4)
    assert out.ensemble.shape == (batch, 7, height // 4, width // 4)
    loss = out.branches.square().mean() + out.ensemble.square().mean() + model.regularization_loss()
    loss.backward()
    no_grad = [n for n, p in model.named_parameters() if p.grad is None]
    assert not no_grad, f"parameters that got no gradient: {no_grad[:5]}"
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    model.eval()
    with torch.no_grad():
        first, second = model(x), model(x)
    assert torch.equal(first.ensemble, second.ensemble), "eval mode must be deterministic (no dropout)"


@pytest.mark.parametrize("name", ["cen", "asymfusion", "shared_bn"])
def test_alpha_ensemble_is_softmax_weighted_detached_branches(name):
    model = build(name, backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"]).eval()
    with torch.no_grad():
        model.alpha.copy_(torch.tensor([0.3, -1.2]))
    out = model(torch.randn(2, 2, 3, 32, 32))
    weights = torch.softmax(torch.tensor([0.3, -1.2]), 0)
    torch.testing.assert_close(out.ensemble, weights[0] * out.branches[0] + weights[1] * out.branches[1])
    out.ensemble.sum().backward()
    trained = [n for n, p in model.named_parameters() if p.grad is not None and p.grad.abs().sum() > 0]
    assert trained == ["alpha"], "the ensemble loss trains alpha only"


def test_unimodal_reads_its_chosen_modality():
    model = build("unimodal", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"], modality="depth")
    model.eval()
    x = torch.randn(2, 1, 3, 32, 32)
    with torch.no_grad():
        from_depth = model(x).branches
        x_changed_rgb = x.clone()
        x_changed_rgb[0] = torch.randn_like(x[0])
        assert torch.equal(model(x_changed_rgb).branches, from_depth)


def test_shared_bn_has_one_bn_for_all_modalities():
    shared = build("shared_bn", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"])
    private = build("cen", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"])
    assert len(shared.encoder.layer1[0].bn2.bns) == 1 and len(private.encoder.layer1[0].bn2.bns) == 2


def test_unknown_model_and_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="unknown model 'cne'.*'cen'"):
        build("cne", num_classes=3, modalities=["rgb", "depth"])
    with pytest.raises(ValueError, match="unknown backbone 'resnet18'"):
        build("cen", backbone="resnet18", num_classes=3, modalities=["rgb", "depth"])
    with pytest.raises(TypeError, match="theshold"):
        build("cen", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"], theshold=0.1)
    with pytest.raises(ValueError, match="cen needs at least 2 modalities"):
        build("cen", backbone="resnet_mini", num_classes=3, modalities=["rgb"])
    with pytest.raises(ValueError, match="'ir'.*not among the inputs"):
        build("unimodal", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"], modality="ir")


def test_wrong_input_shape_names_what_was_expected():
    model = build("cen", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"])
    expected = r"expects input \[M, B, C, H, W\] = \[2, 'B', 3, 'H', 'W'\].*got \[3, 2, 3, 32, 32\]"
    with pytest.raises(ValueError, match=expected):
        model(torch.randn(3, 2, 3, 32, 32))


def test_register_model_rejects_duplicates():
    with pytest.raises(ValueError, match="registered twice"):
        register_model(type("cen", (), {"__name__": "cen"}))


def test_tasks_have_their_own_registries():
    assert list_models(task="segmentation") == list_models() == EXPECTED_MODELS
    translation = list_models(task="translation")
    assert {"cen", "asymfusion", "unimodal"} <= set(translation) and "early_concat" not in translation
    assert list_models(task=None) == sorted(set(EXPECTED_MODELS) | set(translation))
    assert list_models("a*", task="translation") == ["asymfusion", "attention", "average"]
    segmentation = build("cen", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"])
    translator = build("cen", backbone="unet_mini", num_classes=3, modalities=["rgb", "depth"], task="translation")
    assert type(segmentation) is not type(translator)
    with pytest.raises(ValueError, match=r"unknown task 'detection'; expected one of \['segmentation', 'trans"):
        list_models(task="detection")


def test_register_model_with_a_task():
    from fusionlab.models import registry

    @register_model(task="translation")
    def probe_model(**kwargs):
        return SimpleNamespace(**kwargs)  # build() records its arguments on what it builds

    try:
        assert list_models("probe*", task="translation") == ["probe_model"] and list_models("probe*") == []
        built = build("probe_model", num_classes=3, modalities=["a"], task="translation")
        assert built.backbone == "pix2pix_unet" and built.build_args.backbone == "pix2pix_unet"
        with pytest.raises(ValueError, match="translation model 'probe_model' is registered twice"):
            register_model(probe_model, task="translation")
    finally:
        del registry._MODELS["translation"]["probe_model"]

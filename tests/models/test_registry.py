"""Registry-driven: every registered model runs forward and backward at tiny size, for M = 2 and M = 3, on every tiny
backbone of each family it runs on (a ResNet under RefineNet, an Xception under DeepLabv3+, a Mix Transformer under
the all-MLP decoder, and whatever ``models/backbones/`` registers next), and the config accepts it there."""

from types import SimpleNamespace

import pytest
import torch
from registry_checks import check_config, check_forward_backward

from fusionlab.models import (
    backbone_family,
    build,
    list_backbones,
    list_models,
    min_modalities,
    register_model,
    runs_on,
)
from tiny_backbones import tiny_pairs

PAPERS_MODELS = ["asymfusion", "asymfusion_shift_only", "asymfusion_shuffle_only", "cen", "cen_no_exchange",
                 "cen_penalised_exchange", "cen_random_exchange", "early_concat", "late_fusion", "shared_bn",
                 "tokenfusion", "unimodal"]
RUNS_ON = tiny_pairs()


def test_registry_lists_the_papers_models_and_baselines():
    assert set(PAPERS_MODELS) <= set(list_models())
    assert {"asymfusion", "late_fusion", "tokenfusion"} <= set(list_models("*fusion"))
    assert all(name.endswith("fusion") for name in list_models("*fusion"))


def test_every_family_has_a_tiny_backbone_and_every_model_one_to_run_on():
    families = {backbone_family(backbone) for backbone in list_backbones()}
    assert families == {backbone_family(backbone) for backbone in list_backbones(tiny=True)}
    assert {"resnet", "xception", "mit"} <= families
    assert {name for name, _ in RUNS_ON} == set(list_models())


def test_the_cnn_fusion_models_run_on_the_cnns_tokenfusion_on_the_transformer_and_the_baselines_on_all():
    tiny = list_backbones(tiny=True)
    families = {name: {backbone_family(b) for b in tiny if runs_on(name, b)} for name in list_models()}
    everything = {backbone_family(b) for b in tiny}
    assert families["tokenfusion"] == {"mit"}
    assert families["unimodal"] == families["early_concat"] == families["late_fusion"] == everything
    assert families["cen"] == families["asymfusion"] == families["shared_bn"] == {"resnet", "xception"}
    with pytest.raises(ValueError, match="model 'cen' does not run on backbone 'mit_mini' .* resnet or xception"):
        build("cen", backbone="mit_mini", num_classes=7, modalities=["rgb", "depth"])


def test_the_fusion_models_declare_two_modalities_the_baselines_one():
    fusing = {name for name in list_models() if min_modalities(name) == 2}
    assert {name for name in PAPERS_MODELS if name.startswith(("cen", "asymfusion", "tokenfusion"))} <= fusing
    assert not fusing & {"unimodal", "early_concat", "late_fusion", "shared_bn"}
    assert min_modalities("unimodal", "translation") == 1
    assert all(min_modalities(name, "translation") == 2 for name in ("cen", "asymfusion", "concat", "average"))


@pytest.mark.parametrize("num_modalities", [2, 3])
@pytest.mark.parametrize(("name", "backbone"), RUNS_ON)
def test_forward_backward_every_model(name, num_modalities, backbone):
    check_forward_backward(name, backbone, num_modalities)


@pytest.mark.parametrize(("name", "backbone"), RUNS_ON)
def test_the_config_accepts_every_model_on_its_backbones_and_refuses_too_few_modalities(name, backbone):
    check_config(name, backbone)


@pytest.mark.parametrize(("name", "backbone"), [(name, b) for name, b in RUNS_ON if min_modalities(name) == 1])
def test_a_model_that_takes_one_modality_runs_on_one(name, backbone):
    check_forward_backward(name, backbone, 1)


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
    assert list_models(task="segmentation") == list_models()
    translation = list_models(task="translation")
    assert {"cen", "asymfusion", "unimodal"} <= set(translation) and "early_concat" not in translation
    assert list_models(task=None) == sorted(set(list_models()) | set(translation))
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
        registry.unregister_model("probe_model", task="translation")

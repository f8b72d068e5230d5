"""A backbone is one file: a module dropped into ``fusionlab.models.backbones`` (here from a temporary folder added to
the package's path, so the source tree is untouched) registers it, and the registry-driven checks run on it with no
other file edited: every model that runs on its family builds and trains a step on it, its FLOPs are counted, the
config accepts it, ImageNet weights load through its family's mapping.

Two such files: ``resnet_toy`` (one more ResNet: every CNN fusion model runs on it) and ``toy_cnn_mini`` of a new
family ``toy`` (a plain two-conv encoder and a 1x1 decoder: the baselines, which run on every family, run on it; the
fusion models, which name the families whose blocks they fuse in, refuse it)."""

import sys

import pytest
import torch
from registry_checks import check_config, check_forward_backward, check_step_flops

import fusionlab.models.backbones as backbones_package
from fusionlab.models import backbone_registry, build, get_backbone, list_backbones, list_models, runs_on
from fusionlab.models.pretrained import checks_release, imagenet_weight_keys, load_imagenet_weights
from tiny_backbones import tiny_backbones

RESNET_TOY = '''
"""One more ResNet: a spec under the family ``models/backbones/resnet.py`` registers."""

from fusionlab.models.backbone_registry import register_backbone
from fusionlab.models.backbones.resnet import RESNET
from fusionlab.models.resnet import BackboneSpec


@register_backbone(family=RESNET, tiny=True)
def resnet_toy() -> BackboneSpec:
    return BackboneSpec((2, 2, 2, 2), width=8, decoder_dims=(32, 16, 16, 16))
'''

TOY_FAMILY = '''
"""A new family in one file: its spec, encoder (shared convs, BN private per modality), decoder and ImageNet files."""

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from fusionlab.models.backbone_registry import BackboneFamily, register_backbone, register_family
from fusionlab.models.modal import ModalBatchNorm2d, SharedConv2d
from fusionlab.models.pretrained import encoder_state_from_torchvision, single_modality_keys


@dataclass(frozen=True)
class ToySpec:
    widths: tuple[int, int] = (8, 16)

    def scaled(self, width: float) -> "ToySpec":
        return ToySpec(tuple(max(1, round(w * width)) for w in self.widths))


class ToyEncoder(nn.Module):
    """Two stride-2 3x3 convs: features at stride 4."""

    def __init__(self, spec: ToySpec, num_modalities: int, in_channels: int = 3, shared_bn: bool = False):
        super().__init__()
        first, second = spec.widths
        self.conv1 = SharedConv2d(in_channels, first, 3, stride=2, padding=1, bias=False,
                                  num_modalities=num_modalities)
        self.bn1 = ModalBatchNorm2d(first, num_modalities, shared=shared_bn)
        self.conv2 = SharedConv2d(first, second, 3, stride=2, padding=1, bias=False, num_modalities=num_modalities)
        self.bn2 = ModalBatchNorm2d(second, num_modalities, shared=shared_bn)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


def encoder(spec, num_branches, *, in_channels, shared_bn, block_factory, encoder_class=None):
    return (encoder_class or ToyEncoder)(spec, num_branches, in_channels, shared_bn)


def decoder(spec, encoder, num_classes, num_branches, *, shared_bn, rcu_residual):
    return SharedConv2d(spec.widths[-1], num_classes, 1, num_modalities=num_branches)


def weight_keys(spec):
    with torch.device("meta"):
        return single_modality_keys(ToyEncoder(spec, 1))


TOY = register_family(BackboneFamily("toy", ToySpec, encoder=encoder, decoder=decoder, encoder_type=ToyEncoder,
                                     imagenet_state=encoder_state_from_torchvision, weight_keys=weight_keys))


@register_backbone(family=TOY, tiny=True)
def toy_cnn_mini() -> ToySpec:
    return ToySpec()
'''


@pytest.fixture
def plugin_backbones(tmp_path_factory):
    """The two files, written into a folder added to ``fusionlab.models.backbones.__path__`` and discovered as the
    package's own modules are; removed afterwards."""
    folder = tmp_path_factory.mktemp("backbones")
    (folder / "resnet_toy.py").write_text(RESNET_TOY)
    (folder / "toy_family.py").write_text(TOY_FAMILY)
    backbones_package.__path__.append(str(folder))
    try:
        backbone_registry.discover()
        yield ["resnet_toy", "toy_cnn_mini"]
    finally:
        backbones_package.__path__.remove(str(folder))
        backbone_registry.unregister_backbone("resnet_toy")
        backbone_registry.unregister_family("toy")
        for module in ("resnet_toy", "toy_family"):
            sys.modules.pop(f"{backbones_package.__name__}.{module}", None)


def plugin_pairs(backbones: list[str]) -> list[tuple[str, str]]:
    return [(name, backbone) for backbone in backbones for name in list_models() if runs_on(name, backbone)]


def test_a_new_file_registers_the_backbones(plugin_backbones):
    assert set(plugin_backbones) <= set(list_backbones(tiny=True))
    assert set(list_backbones("*toy*")) == set(plugin_backbones)
    assert get_backbone("resnet_toy").width == 8
    assert backbone_registry.backbone_family("toy_cnn_mini") == "toy"
    assert "toy_cnn_mini" in tiny_backbones("unimodal")  # what the registry-driven tests parametrise over


def test_every_cnn_model_runs_on_a_new_resnet_and_the_baselines_on_a_new_family(plugin_backbones):
    on_resnet = {name for name, backbone in plugin_pairs(plugin_backbones) if backbone == "resnet_toy"}
    on_toy = {name for name, backbone in plugin_pairs(plugin_backbones) if backbone == "toy_cnn_mini"}
    assert on_resnet == {name for name in list_models() if runs_on(name, "resnet_mini")}
    assert on_toy == {name for name in list_models() if runs_on(name, "toy_cnn_mini")}
    assert {"unimodal", "early_concat", "late_fusion"} <= on_toy and "cen" not in on_toy
    with pytest.raises(ValueError, match=r"model 'cen' does not run on backbone 'toy_cnn_mini' \(a toy\)"):
        build("cen", backbone="toy_cnn_mini", num_classes=3, modalities=["rgb", "depth"])


def test_the_registry_driven_checks_run_on_the_new_backbones(plugin_backbones):
    pairs = plugin_pairs(plugin_backbones)
    assert len(pairs) > len(plugin_backbones)
    for name, backbone in pairs:
        check_forward_backward(name, backbone, 2)
        check_step_flops(name, backbone)
        check_config(name, backbone)


def test_imagenet_weights_load_through_the_new_familys_mapping(plugin_backbones, tmp_path):
    keys = imagenet_weight_keys("toy_cnn_mini")
    assert keys == {"conv1.weight": (8, 3, 3, 3), "bn1.weight": (8,), "bn1.bias": (8,), "bn1.running_mean": (8,),
                    "bn1.running_var": (8,), "bn1.num_batches_tracked": (), "conv2.weight": (16, 8, 3, 3),
                    "bn2.weight": (16,), "bn2.bias": (16,), "bn2.running_mean": (16,), "bn2.running_var": (16,),
                    "bn2.num_batches_tracked": ()}
    weights = {key: torch.randn(shape) if shape else torch.tensor(0) for key, shape in keys.items()}
    torch.save(weights, tmp_path / "toy.pth")
    assert not checks_release("toy_cnn_mini") and checks_release("resnet_toy")
    model = build("late_fusion", backbone="toy_cnn_mini", num_classes=3, modalities=["rgb", "depth"])
    load_imagenet_weights(model, tmp_path / "toy.pth")
    for net in model.nets:
        torch.testing.assert_close(net.encoder.conv2.weight, weights["conv2.weight"])
        torch.testing.assert_close(net.encoder.bn1.bns[0].weight, weights["bn1.weight"])
    assert model.pretrained_file.release is None  # identified, of no torchvision release


def test_after_the_fixture_only_the_built_in_backbones_are_left():
    """The fixture's teardown unregisters what the files registered (this runs after the tests above)."""
    assert not list_backbones("*toy*", task=None) and "toy" not in backbone_registry.list_families()
    assert {"resnet_mini", "xception_mini", "mit_mini"} <= set(list_backbones(tiny=True))


def test_registration_refuses_what_would_be_ambiguous():
    resnet = backbone_registry.get_family("resnet")
    with pytest.raises(ValueError, match="backbone 'resnet50' is registered twice"):
        backbone_registry.register_backbone(lambda: get_backbone("resnet50"), family=resnet, name="resnet50")
    with pytest.raises(TypeError, match="backbone 'odd' of family 'resnet' must be a BackboneSpec, got MiTSpec"):
        backbone_registry.register_backbone(lambda: get_backbone("mit_mini"), family=resnet, name="odd")
    stray = backbone_registry.BackboneFamily("stray", type("StraySpec", (), {}), encoder=print, decoder=print)
    with pytest.raises(ValueError, match="family 'stray' is not registered"):
        backbone_registry.register_backbone(lambda: None, family=stray, name="stray_mini")
    with pytest.raises(ValueError, match="backbone family 'resnet' is registered twice"):
        backbone_registry.register_family(resnet)
    assert "odd" not in list_backbones() and "stray" not in backbone_registry.list_families()


def test_a_name_is_looked_up_in_its_tasks_backbones():
    with pytest.raises(ValueError, match=r"unknown backbone 'unet_mini'; expected one of \['mit_b0'"):
        get_backbone("unet_mini")
    with pytest.raises(ValueError, match=r"unknown translation backbone 'resnet50'; expected one of \['pix2pix_unet'"):
        get_backbone("resnet50", task="translation")
    spec = get_backbone("resnet_mini").scaled(0.5)
    assert get_backbone(spec) is spec and backbone_registry.backbone_family(spec) == "resnet"

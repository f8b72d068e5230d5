"""ImageNet weights in torchvision's ResNet naming load into every modality's BN copy; mismatches are errors."""

import pytest
import torch

from fusionlab.models import PretrainedWeightsError, build, load_imagenet_resnet
from imagenet_files import torchvision_resnet_state

RESNET50 = (3, 4, 6, 3)


@pytest.fixture(scope="module")
def resnet50_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "resnet50-imagenet.pth"
    torch.manual_seed(0)
    torch.save(torchvision_resnet_state(RESNET50), path)
    return path


def test_round_trip_into_every_modality_copy(resnet50_file):
    source = torch.load(resnet50_file, weights_only=True)
    model = build("cen", backbone="resnet50", num_classes=40, modalities=["rgb", "depth", "hha"])
    load_imagenet_resnet(model, resnet50_file)
    encoder = model.encoder.state_dict()
    checked = 0
    for key, value in source.items():
        if key.startswith("fc."):
            continue
        head, _, leaf = key.rpartition(".")
        if ".bn" in f".{head}" or head.endswith("downsample.1"):
            for m in range(3):
                assert torch.equal(encoder[f"{head}.bns.{m}.{leaf}"], value), f"{key} -> modality {m}"
                checked += 1
        else:
            assert torch.equal(encoder[key], value), key
            checked += 1
    assert checked == len(encoder), "every encoder tensor came from the file"


def test_late_fusion_loads_each_network_and_early_concat_tiles_the_stem(resnet50_file):
    source = torch.load(resnet50_file, weights_only=True)
    late = build("late_fusion", backbone="resnet50", num_classes=40, modalities=["rgb", "depth"])
    load_imagenet_resnet(late, resnet50_file)
    for net in late.nets:
        assert torch.equal(net.encoder.layer4[2].conv3.weight, source["layer4.2.conv3.weight"])
    early = build("early_concat", backbone="resnet50", num_classes=40, modalities=["rgb", "depth"])
    load_imagenet_resnet(early, resnet50_file)
    stem = early.net.encoder.conv1.weight
    assert stem.shape == (64, 6, 7, 7)
    torch.testing.assert_close(stem[:, :3] + stem[:, 3:], source["conv1.weight"])


def test_checkpoint_without_batch_counters_loads():
    torch.manual_seed(1)
    state = torchvision_resnet_state(RESNET50, counters=False)
    model = build("unimodal", backbone="resnet50", num_classes=40, modalities=["rgb"])
    load_imagenet_resnet(model, state)
    assert torch.equal(model.encoder.bn1.bns[0].running_var, state["bn1.running_var"])


def test_missing_and_unexpected_keys_are_named():
    state = torchvision_resnet_state(RESNET50)
    del state["layer3.5.bn2.weight"]
    state["layer5.0.conv1.weight"] = torch.zeros(1)
    model = build("cen", backbone="resnet50", num_classes=40, modalities=["rgb", "depth"])
    with pytest.raises(PretrainedWeightsError, match=r"missing encoder keys \[layer3\.5\.bn2\.weight\]") as error:
        load_imagenet_resnet(model, state)
    assert "unexpected keys [layer5.0.conv1.weight]" in str(error.value)


def test_wrong_backbone_depth_and_shape_are_errors(resnet50_file):
    model = build("cen", backbone="resnet101", num_classes=40, modalities=["rgb", "depth"])
    with pytest.raises(PretrainedWeightsError, match=r"resnet50-imagenet\.pth.*missing encoder keys \[layer3\.10"):
        load_imagenet_resnet(model, resnet50_file)
    mini = build("cen", backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"])
    with pytest.raises(PretrainedWeightsError, match=r"conv1.weight has shape \[64, 3, 7, 7\].*needs \[16, 3, 7, 7\]"):
        load_imagenet_resnet(mini, torchvision_resnet_state((2, 2, 2, 2)))


def test_unreadable_file_is_a_clear_error(tmp_path):
    bad = tmp_path / "not-weights.pth"
    bad.write_bytes(b"this is not a checkpoint")
    model = build("unimodal", backbone="resnet_mini", num_classes=5, modalities=["rgb"])
    with pytest.raises(PretrainedWeightsError, match="cannot read pretrained weights .*not-weights.pth"):
        load_imagenet_resnet(model, bad)
    with pytest.raises(PretrainedWeightsError, match="not found"):
        load_imagenet_resnet(model, tmp_path / "absent.pth")


def xception_imagenet_state(backbone: str) -> dict[str, torch.Tensor]:
    """A file in fusionlab's Xception format (a unimodal encoder's state dict), random values, an ImageNet fc too."""
    from fusionlab.models.pretrained import imagenet_weight_keys

    torch.manual_seed(2)
    state = {key: torch.rand(shape) + 0.5 if shape else torch.tensor(7)
             for key, shape in imagenet_weight_keys(backbone).items()}
    state["fc.weight"], state["fc.bias"] = torch.randn(1000, 64), torch.randn(1000)
    return state


def test_xception_weights_in_fusionlab_names_load_into_every_modality_and_the_concat_stem(tmp_path):
    path = tmp_path / "xception-mini-imagenet.pth"
    torch.save(xception_imagenet_state("xception_mini"), path)
    source = torch.load(path, weights_only=True)
    model = build("cen", backbone="xception_mini", num_classes=5, modalities=["rgb", "depth"])
    load_imagenet_resnet(model, path)
    encoder = model.encoder.state_dict()
    for m in range(2):
        assert torch.equal(encoder[f"middle.1.bn2.bns.{m}.running_var"], source["middle.1.bn2.running_var"])
        assert torch.equal(encoder[f"entry.0.conv2.depthwise_bn.bns.{m}.weight"],
                           source["entry.0.conv2.depthwise_bn.weight"])
    assert torch.equal(encoder["exit.1.conv3.pointwise.weight"], source["exit.1.conv3.pointwise.weight"])
    early = build("early_concat", backbone="xception_mini", num_classes=5, modalities=["rgb", "depth"])
    load_imagenet_resnet(early, path)
    stem = early.net.encoder.conv1.weight
    torch.testing.assert_close(stem[:, :3] + stem[:, 3:], source["conv1.weight"])
    with pytest.raises(PretrainedWeightsError,
                       match=r"missing encoder keys \[middle\.1\.bn1\.bias.*unexpected keys \[middle\.2\.x\]"):
        load_imagenet_resnet(build("unimodal", backbone="xception_mini", num_classes=5, modalities=["rgb"]),
                             {key: value for key, value in source.items() if not key.startswith("middle.1.")}
                             | {"middle.2.x": torch.zeros(1)})


def test_models_weight_keys_lists_the_xception65_file_format(capsys):
    from fusionlab.cli import main

    assert main(["models", "--backbone", "xception65", "--weight-keys"]) == 0
    lines = capsys.readouterr().out.splitlines()
    keys = dict(line.split(maxsplit=1) for line in lines)
    assert keys["conv1.weight"] == "[32, 3, 3, 3]" and keys["exit.1.conv3.pointwise.weight"] == "[2048, 1536, 1, 1]"
    assert "middle.15.bn2.running_var" in keys and not any(".bns." in key for key in keys)


def test_the_pretrained_modules_import_each_other_without_a_cycle():
    """Their errors live in a leaf module (``pretrained_errors``): the loader imports the release check and the
    families import the mappings, never the other way round."""
    import ast
    from pathlib import Path

    import fusionlab.models

    folder = Path(fusionlab.models.__file__).parent
    graph = {path.stem: {node.module for node in ast.walk(ast.parse(path.read_text()))
                         if isinstance(node, ast.ImportFrom) and node.level == 1 and node.module
                         and node.module.startswith("pretrained")}
             for path in folder.glob("pretrained*.py")}
    assert graph["pretrained_errors"] == set()
    assert "pretrained" not in graph["pretrained_mit"] | graph["pretrained_release"]

    def reaches(start: str, seen: frozenset = frozenset()) -> set[str]:
        found = set()
        for module in graph.get(start, ()):
            if module not in seen:
                found |= {module} | reaches(module, seen | {module})
        return found

    assert not [module for module in graph if module in reaches(module)]

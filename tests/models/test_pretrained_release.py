"""model.pretrained_version: a torchvision ResNet file is told by its sha256 and refused when it is another release
(or none known), with what was found, what was expected and how to override; the run records what was used."""

import hashlib
import re

import pytest
import torch

from fusionlab.config import validate_config
from fusionlab.data import LabelSpec, Manifest, depth_mm_spec, rgb_spec
from fusionlab.models import build, get_backbone, load_imagenet_resnet
from fusionlab.models import pretrained_release as releases
from fusionlab.models.pretrained_release import PretrainedReleaseError, check_pretrained_release, identify_pretrained
from imagenet_files import torchvision_resnet_state


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """A torchvision-format file for resnet_mini's shape, and the file's sha256 prefix."""
    path = tmp_path_factory.mktemp("weights") / "resnet-mini.pth"
    spec = get_backbone("resnet_mini")
    torch.save(torchvision_resnet_state(spec.layers, width=spec.width), path)
    return path, hashlib.sha256(path.read_bytes()).hexdigest()[:8]


@pytest.fixture
def as_release(monkeypatch, weights):
    """Make the test file play a torchvision release: ``as_release("imagenet1k_v1")``."""
    def play(release: str, arch: str = "resnet_mini") -> None:
        monkeypatch.setitem(releases.KNOWN_FILES, weights[1], (arch, release))
    return play


def test_the_known_files_are_torchvisions():
    assert {release for _, release in releases.KNOWN_FILES.values()} == set(releases.RELEASES)
    v1 = sorted(f"{arch}-{prefix}" for prefix, (arch, release) in releases.KNOWN_FILES.items()
                if release == "imagenet1k_v1")
    assert v1 == ["resnet101-5d3b4d8f", "resnet101-63fe2227", "resnet152-394f9c45", "resnet152-b121ed2d",
                  "resnet50-0676ba61", "resnet50-19c8e357"]
    assert all(re.fullmatch(r"[0-9a-f]{8}", prefix) for prefix in releases.KNOWN_FILES)


def test_a_file_is_identified_by_its_hash_not_its_name(weights, as_release):
    path, prefix = weights
    unknown = identify_pretrained(path)
    assert unknown.release is None and unknown.prefix == prefix
    as_release("imagenet1k_v2")
    found = identify_pretrained(path)
    assert (found.arch, found.release, found.sha256[:8]) == ("resnet_mini", "imagenet1k_v2", prefix)


def test_the_expected_release_is_accepted(weights, as_release):
    as_release("imagenet1k_v1")
    assert check_pretrained_release(weights[0], "imagenet1k_v1").release == "imagenet1k_v1"


def test_the_other_release_is_refused_with_what_was_found_and_how_to_override(weights, as_release):
    path, prefix = weights
    as_release("imagenet1k_v2", arch="resnet101")
    with pytest.raises(PretrainedReleaseError) as error:
        check_pretrained_release(path, "imagenet1k_v1", arch="resnet101")
    message = str(error.value)
    assert f"model.pretrained {path} (sha256 {prefix}...) is torchvision resnet101 imagenet1k_v2" in message
    assert ("model.pretrained_version is imagenet1k_v1 (files: resnet101-5d3b4d8f.pth, resnet101-63fe2227.pth)"
            in message)
    assert "set model.pretrained_version: any" in message


def test_a_file_of_no_known_release_is_refused_unless_any(weights):
    path, prefix = weights
    with pytest.raises(PretrainedReleaseError, match=re.escape(
            f"(sha256 {prefix}...) is not a known torchvision ResNet ImageNet release, but model.pretrained_version "
            f"is imagenet1k_v2")):
        check_pretrained_release(path, "imagenet1k_v2")
    assert check_pretrained_release(path, "any").release is None


def test_the_loader_checks_first_and_keeps_what_it_loaded(weights, as_release):
    path, prefix = weights
    model = build("cen", backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"])
    before = model.encoder.conv1.weight.clone()
    with pytest.raises(PretrainedReleaseError):
        load_imagenet_resnet(model, path, "imagenet1k_v1")
    assert torch.equal(model.encoder.conv1.weight, before)  # refused before anything was copied
    as_release("imagenet1k_v1")
    load_imagenet_resnet(model, path, "imagenet1k_v1")
    assert not torch.equal(model.encoder.conv1.weight, before)
    assert model.pretrained_file.release == "imagenet1k_v1" and model.pretrained_file.sha256.startswith(prefix)
    with pytest.raises(PretrainedReleaseError, match="in-memory state dict"):
        load_imagenet_resnet(model, torch.load(path, weights_only=True), "imagenet1k_v1")


def _training(path, version: str):
    from fusionlab.train.segmentation_task import build_model

    config = validate_config({"data": {"path": "unused", "modalities": ["rgb", "depth"]},
                              "model": {"name": "cen", "backbone": "resnet_mini", "pretrained": str(path),
                                        "pretrained_version": version}})
    manifest = Manifest(name="tiny", task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                        label=LabelSpec(("a", "b", "c")))
    return build_model(config, manifest), manifest


def test_training_refuses_the_wrong_release_and_records_the_right_one(weights, as_release):
    from fusionlab.tracking.runs import PRETRAINED_RELEASE_TAG, PRETRAINED_SHA256_TAG, run_tags

    path, prefix = weights
    as_release("imagenet1k_v2")
    with pytest.raises(PretrainedReleaseError, match="model.pretrained_version is imagenet1k_v1"):
        _training(path, "imagenet1k_v1")
    model, manifest = _training(path, "imagenet1k_v2")
    tags = run_tags(manifest, model)
    assert tags[PRETRAINED_RELEASE_TAG] == "resnet_mini imagenet1k_v2"
    assert tags[PRETRAINED_SHA256_TAG] == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_run_without_pretrained_weights_records_none():
    from fusionlab.tracking.runs import PRETRAINED_SHA256_TAG, run_tags

    model = build("cen", backbone="resnet_mini", num_classes=3, modalities=["rgb", "depth"])
    manifest = Manifest(name="tiny", task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                        label=LabelSpec(("a", "b", "c")))
    assert PRETRAINED_SHA256_TAG not in run_tags(manifest, model)

"""SegFormer's ImageNet Mix Transformer file (official names, ``head.*``) loads into fusionlab's MiT encoders: shared
weights once, every LayerNorm into each modality's copy; mismatches are errors naming the key."""

import pytest
import torch

from fusionlab.models import PretrainedWeightsError, build, get_backbone, load_imagenet_weights
from fusionlab.models.pretrained import imagenet_weight_keys

MODALITIES = ["rgb", "depth"]
PATCHES = (7, 3, 3, 3)  # the reference's OverlapPatchEmbed kernels, stage 1 to 4


def segformer_mit_state(backbone: str, classes: int = 1000) -> dict[str, torch.Tensor]:
    """A state dict laid out as SegFormer's single-modality ``MixVisionTransformer`` (NVlabs/SegFormer; the
    TokenFusion reference's mix_transformer.py without its ModuleParallel / LayerNormParallel wrappers), random
    values, the ImageNet ``head`` too."""
    spec = get_backbone(backbone)
    state = {}

    def linear(prefix, inputs, outputs):
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = torch.randn(outputs, inputs), torch.randn(outputs)

    def conv(prefix, inputs, outputs, kernel):
        state[f"{prefix}.weight"] = torch.randn(outputs, inputs, kernel, kernel)
        state[f"{prefix}.bias"] = torch.randn(outputs)

    def norm(prefix, dim):
        state[f"{prefix}.weight"], state[f"{prefix}.bias"] = torch.rand(dim) + 0.5, torch.randn(dim)

    widths = (3, *spec.embed_dims)
    for stage in range(1, 5):
        dim, hidden, sr = widths[stage], widths[stage] * spec.mlp_ratio, spec.sr_ratios[stage - 1]
        conv(f"patch_embed{stage}.proj", widths[stage - 1], dim, PATCHES[stage - 1])
        norm(f"patch_embed{stage}.norm", dim)
        for index in range(spec.depths[stage - 1]):
            block = f"block{stage}.{index}"
            norm(f"{block}.norm1", dim)
            linear(f"{block}.attn.q", dim, dim)
            linear(f"{block}.attn.kv", dim, 2 * dim)
            linear(f"{block}.attn.proj", dim, dim)
            if sr > 1:
                conv(f"{block}.attn.sr", dim, dim, sr)
                norm(f"{block}.attn.norm", dim)
            norm(f"{block}.norm2", dim)
            linear(f"{block}.mlp.fc1", dim, hidden)
            state[f"{block}.mlp.dwconv.dwconv.weight"] = torch.randn(hidden, 1, 3, 3)
            state[f"{block}.mlp.dwconv.dwconv.bias"] = torch.randn(hidden)
            linear(f"{block}.mlp.fc2", hidden, dim)
        norm(f"norm{stage}", dim)
    linear("head", widths[4], classes)
    return state


def is_layer_norm(key: str) -> bool:
    return key.rpartition(".")[0].endswith(("norm", "norm1", "norm2", "norm3", "norm4"))


@pytest.fixture(scope="module")
def mit_mini_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "mit_mini.pth"
    torch.manual_seed(0)
    torch.save(segformer_mit_state("mit_mini"), path)
    return path


def tokenfusion(seed: int = 1, modalities=MODALITIES):
    torch.manual_seed(seed)
    return build("tokenfusion", backbone="mit_mini", num_classes=5, modalities=modalities)


def test_the_file_format_is_segformers_names_and_shapes():
    keys = imagenet_weight_keys("mit_b1")
    official = {key: tuple(value.shape) for key, value in segformer_mit_state("mit_b1").items()
                if not key.startswith("head.")}
    assert keys == official and len(keys) == 176
    assert keys["patch_embed1.proj.weight"] == (64, 3, 7, 7) and keys["patch_embed2.norm.bias"] == (128,)
    assert keys["block1.0.attn.kv.weight"] == (128, 64) and keys["block1.1.attn.sr.weight"] == (64, 64, 8, 8)
    assert keys["block1.0.attn.norm.weight"] == (64,) and keys["block3.1.mlp.dwconv.dwconv.weight"] == (1280, 1, 3, 3)
    assert keys["norm4.bias"] == (512,) and "block4.0.attn.sr.weight" not in keys  # stage 4: sr ratio 1
    assert not any(".norms." in key or key.startswith("head.") for key in keys)


def test_round_trip_into_every_modality_copy_head_ignored(mit_mini_file):
    source = torch.load(mit_mini_file, weights_only=True)
    model = tokenfusion()
    predictors = {k: v.clone() for k, v in model.encoder.state_dict().items() if k.startswith("score_predictor.")}
    load_imagenet_weights(model, mit_mini_file)
    encoder = model.encoder.state_dict()
    checked = set()
    for key, value in source.items():
        if key.startswith("head."):
            continue
        head, _, leaf = key.rpartition(".")
        if is_layer_norm(key):
            for m in range(len(MODALITIES)):
                assert torch.equal(encoder[f"{head}.norms.{m}.{leaf}"], value), f"{key} -> modality {m}"
                checked.add(f"{head}.norms.{m}.{leaf}")
        else:
            ours = key.replace("mlp.dwconv.dwconv.", "mlp.dwconv.")
            assert torch.equal(encoder[ours], value), key
            checked.add(ours)
    assert checked == set(encoder) - set(predictors), "every MiT tensor came from the file"
    assert torch.equal(encoder["block1.0.mlp.dwconv.weight"], source["block1.0.mlp.dwconv.dwconv.weight"])
    assert torch.equal(encoder["norm4.norms.1.bias"], source["norm4.bias"])
    for key, value in predictors.items():  # not part of the ImageNet MiT: as initialised, as the reference
        assert torch.equal(encoder[key], value), key
    assert model.pretrained_file.sha256 and model.pretrained_file.release is None


def test_the_weights_change_the_output(mit_mini_file):
    model = tokenfusion().eval()
    x = torch.randn(len(MODALITIES), 2, 3, 64, 64, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        before = model(x).ensemble
        load_imagenet_weights(model, mit_mini_file)
        after = model(x).ensemble
    assert after.shape == before.shape and not torch.allclose(before, after)


@pytest.mark.parametrize(("edit", "message"), [
    (lambda s: s.pop("block2.0.attn.kv.weight"), r"missing encoder keys \[block2\.0\.attn\.kv\.weight\]"),
    (lambda s: s.pop("norm4.bias"), r"missing encoder keys \[norm4\.bias\]"),
    (lambda s: s.update({"block5.0.attn.q.weight": torch.zeros(1)}), r"unexpected keys \[block5\.0\.attn\.q\.weight\]"),
    (lambda s: s.update({"block1.0.mlp.dwconv.weight": torch.zeros(1)}),
     r"unexpected keys \[block1\.0\.mlp\.dwconv\.weight\]"),  # fusionlab's name, not SegFormer's
    (lambda s: s.update({"block1.0.attn.kv.weight": torch.zeros(16, 16)}),
     r"block1\.0\.attn\.kv\.weight has shape \[16, 16\], the encoder's block1\.0\.attn\.kv\.weight needs \[32, 16\]"),
    (lambda s: s.update({"norm2.weight": torch.ones(31)}),
     r"norm2\.weight has shape \[31\], the encoder's norm2\.norms\.0\.weight needs \[32\]"),
])
def test_missing_unexpected_and_misshaped_keys_are_named_with_the_file(tmp_path, edit, message):
    torch.manual_seed(4)
    state = segformer_mit_state("mit_mini")
    edit(state)
    path = tmp_path / "edited-mit.pth"
    torch.save(state, path)
    model = tokenfusion()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(PretrainedWeightsError, match=message) as error:
        load_imagenet_weights(model, path)
    assert "edited-mit.pth" in str(error.value)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items()), "nothing copied"


def test_another_backbones_file_is_refused(mit_mini_file):
    model = build("tokenfusion", backbone="mit_b0", num_classes=5, modalities=MODALITIES)  # two blocks a stage
    with pytest.raises(PretrainedWeightsError, match=r"mit_mini\.pth does not match the Mix Transformer encoder "
                                                     r"\(SegFormer's names\): missing encoder keys \[block1\.1\."):
        load_imagenet_weights(model, mit_mini_file)


def test_the_references_multimodal_names_load_each_modalitys_copy():
    """yikaiw/TokenFusion names: ``ModuleParallel`` adds ``.module.``, ``LayerNormParallel`` has ``ln_0``, ``ln_1``;
    a ``state_dict`` wrapper and DataParallel's ``module.`` prefix are tolerated too."""
    torch.manual_seed(5)
    official = segformer_mit_state("mit_mini")
    reference = {}
    for key, value in official.items():
        head, _, leaf = key.rpartition(".")
        if key.startswith("head."):
            reference[key] = value
        elif is_layer_norm(key):
            for m in range(2):
                reference[f"module.{head}.ln_{m}.{leaf}"] = value + m
        elif ".dwconv." in key:  # the reference's DWConv is not wrapped
            reference[f"module.{key}"] = value
        else:
            reference[f"module.{head}.module.{leaf}"] = value
    model = tokenfusion()
    load_imagenet_weights(model, {k.removeprefix("module."): v for k, v in reference.items()})
    encoder = model.encoder.state_dict()
    assert torch.equal(encoder["patch_embed1.norm.norms.0.weight"], official["patch_embed1.norm.weight"])
    assert torch.equal(encoder["patch_embed1.norm.norms.1.weight"], official["patch_embed1.norm.weight"] + 1)
    assert torch.equal(encoder["block1.0.attn.q.weight"], official["block1.0.attn.q.weight"])
    with pytest.raises(PretrainedWeightsError, match=r"unexpected keys \[norm1\.ln_2\.bias, norm1\.ln_2\.weight\]"):
        load_imagenet_weights(tokenfusion(), {k.removeprefix("module."): v for k, v in reference.items()}
                              | {"norm1.ln_2.weight": torch.ones(16), "norm1.ln_2.bias": torch.ones(16)})


def test_early_concat_tiles_the_stem_and_late_fusion_loads_each_network(mit_mini_file):
    source = torch.load(mit_mini_file, weights_only=True)
    early = build("early_concat", backbone="mit_mini", num_classes=5, modalities=MODALITIES)
    load_imagenet_weights(early, mit_mini_file)
    stem = early.net.encoder.patch_embed1.proj.weight
    assert stem.shape == (16, 6, 7, 7)
    torch.testing.assert_close(stem[:, :3] + stem[:, 3:], source["patch_embed1.proj.weight"])
    late = build("late_fusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES)
    load_imagenet_weights(late, mit_mini_file)
    for net in late.nets:
        assert torch.equal(net.encoder.block4[0].mlp.fc2.weight, source["block4.0.mlp.fc2.weight"])


@pytest.mark.parametrize("version", ["any", "imagenet1k_v1"])
def test_training_loads_it_from_the_config_and_records_the_file(mit_mini_file, version):
    """The torchvision release check is for ResNets: a MiT file loads whatever ``pretrained_version`` says (the
    reference recipe's ``imagenet1k_v1`` included) and is recorded by its sha256."""
    import hashlib

    from fusionlab.config import validate_config
    from fusionlab.data import LabelSpec, Manifest, depth_mm_spec, rgb_spec
    from fusionlab.tracking.runs import PRETRAINED_RELEASE_TAG, PRETRAINED_SHA256_TAG, run_tags
    from fusionlab.train.segmentation_task import build_model

    config = validate_config({"data": {"path": "unused", "modalities": MODALITIES},
                              "model": {"name": "tokenfusion", "backbone": "mit_mini", "pretrained": str(mit_mini_file),
                                        "pretrained_version": version}})
    manifest = Manifest(name="tiny", task="segmentation", modalities={"rgb": rgb_spec(), "depth": depth_mm_spec()},
                        label=LabelSpec(("a", "b", "c")))
    model = build_model(config, manifest)
    source = torch.load(mit_mini_file, weights_only=True)
    assert torch.equal(model.encoder.block3[0].attn.proj.weight, source["block3.0.attn.proj.weight"])
    assert torch.equal(model.encoder.block3[0].norm2.norms[1].bias, source["block3.0.norm2.bias"])
    tags = run_tags(manifest, model)
    assert tags[PRETRAINED_SHA256_TAG] == hashlib.sha256(mit_mini_file.read_bytes()).hexdigest()
    assert tags[PRETRAINED_RELEASE_TAG] == "unknown"


def test_models_weight_keys_lists_the_mit_b1_file_format(capsys):
    from fusionlab.cli import main

    assert main(["models", "--backbone", "mit_b1", "--weight-keys"]) == 0
    keys = dict(line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines())
    assert keys["patch_embed1.proj.weight"] == "[64, 3, 7, 7]" and keys["block2.1.attn.kv.weight"] == "[256, 128]"
    assert keys["block1.0.mlp.dwconv.dwconv.weight"] == "[256, 1, 3, 3]" and len(keys) == 176

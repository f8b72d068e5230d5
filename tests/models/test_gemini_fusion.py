"""GeminiFusion on the Mix Transformer: its sizes equal the reference's (JiaDingCN/GeminiFusion, counted from its own
modules at 40 classes), its batched cross-modal attention equals the reference's per-sample ``nn.MultiheadAttention``
calls, it sits between the heads and the shared projection, the modalities share every linear and convolution and
keep their norms, attention and noise rows, and it trains for M = 2 and 3."""

import re

import pytest
import torch
from registry_checks import check_forward_backward
from test_memory import saved_bytes_per_sample
from test_pretrained_mit import segformer_mit_state

from fusionlab.cli import main
from fusionlab.models import build, get_backbone, list_backbones, load_imagenet_weights
from fusionlab.models.gemini_fusion import (
    REFERENCE_DROP_PATH,
    CrossModalAttention,
    GeminiFusionEncoder,
    map_reference_state,
    reference_key,
)
from fusionlab.models.memory import sample_training_memory
from fusionlab.models.mit import MiTEncoder, ModalLayerNorm, tokens_to_map
from fusionlab.models.params import GeminiFusionParams
from fusionlab.models.pretrained_mit import mit_state_from_segformer
from fusionlab.models.registry import build_from_params, params_class

# The counts of the reference's own modules (WeTr, num_classes=40, two modalities).
REFERENCE_COUNTS = {"mit_b3": 74_551_274, "mit_b5": 137_209_322}
REFERENCE_TOKENFUSION_B3 = 45_917_306
MODALITIES = ["rgb", "depth", "hha"]


def on_meta(name: str, backbone: str, num_modalities: int = 2) -> torch.nn.Module:
    with torch.device("meta"):
        return build(name, backbone=backbone, num_classes=40, modalities=MODALITIES[:num_modalities])


def count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("backbone", sorted(REFERENCE_COUNTS))
def test_sizes_equal_the_references(backbone):
    assert count(on_meta("geminifusion", backbone)) == REFERENCE_COUNTS[backbone]


def test_each_block_adds_eleven_c_squared_and_fourteen_c_and_nothing_else():
    gemini, tokenfusion = on_meta("geminifusion", "mit_b3"), on_meta("tokenfusion", "mit_b3")
    assert count(tokenfusion) == REFERENCE_TOKENFUSION_B3
    spec = get_backbone("mit_b3")
    fusions = [module for module in gemini.encoder.modules() if isinstance(module, CrossModalAttention)]
    assert len(fusions) == sum(spec.depths)
    widths = [dim for dim, depth in zip(spec.embed_dims, spec.depths, strict=True) for _ in range(depth)]
    for fusion, dim in zip(fusions, widths, strict=True):
        assert count(fusion) == 11 * dim**2 + 14 * dim
    with torch.device("meta"):
        plain = MiTEncoder(spec, 2)
    assert count(gemini.encoder) - count(plain) == sum(11 * dim**2 + 14 * dim for dim in widths)
    assert count(gemini) - count(gemini.encoder) == count(tokenfusion) - count(tokenfusion.encoder)  # decoder, alpha


def test_the_cli_lists_geminifusion_with_the_references_count(capsys):
    assert main(["models", "--backbone", "mit_b3", "--num-classes", "40", "--modalities", "rgb,depth"]) == 0
    rows = {}
    for line in capsys.readouterr().out.splitlines():
        match = re.match(r"\W*(\w+)\W+[\w,+]+\W+(\d[\d,]*)\W", line)
        if match:
            rows[match.group(1)] = int(match.group(2).replace(",", ""))
    assert rows["geminifusion"] == REFERENCE_COUNTS["mit_b3"] and rows["tokenfusion"] == REFERENCE_TOKENFUSION_B3


def per_pixel_reference(fusion: CrossModalAttention, tokens: torch.Tensor) -> torch.Tensor:
    """The reference's loop (``Attention.forward``), generalised to M modalities as the module docstring says: per
    sample, modality i's ``nn.MultiheadAttention`` with the pixels as its batch over the keys
    [x_i + k_noise[i], x_i * r_ij ...] and values [x_i + v_noise[i], x_j ...]."""
    x = tokens.unflatten(0, (fusion.num_modalities, -1))
    out = torch.empty_like(x)
    for i in range(fusion.num_modalities):
        for sample in range(x.shape[1]):
            query = x[i, sample].unsqueeze(0)  # [1, N, C]: one query, the N pixels its batch
            keys, values = [fusion.k_noise.weight[i] + query], [fusion.v_noise.weight[i] + query]
            for j in range(fusion.num_modalities):
                if j != i:
                    other = x[j, sample].unsqueeze(0)
                    keys.append(query * fusion.judger(torch.cat([query, other], dim=-1)))
                    values.append(other)
            attended = fusion.cross_attn[i](query, torch.cat(keys), torch.cat(values))[0]
            out[i, sample] = x[i, sample] + attended.squeeze(0)
    return out.flatten(0, 1)


@pytest.mark.parametrize("num_modalities", [2, 3])
def test_the_batched_attention_is_the_per_pixel_multihead_attention(num_modalities):
    torch.manual_seed(0)
    fusion = CrossModalAttention(16, num_modalities, heads=8)
    for attn in fusion.cross_attn:  # biases away from zero, so that every term counts
        torch.nn.init.normal_(attn.in_proj_bias)
        torch.nn.init.normal_(attn.out_proj.bias)
    tokens = torch.randn(num_modalities * 3, 10, 16)
    torch.testing.assert_close(fusion(tokens), per_pixel_reference(fusion, tokens), rtol=0, atol=1e-6)


def heads_output(attn, x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    """The reference's spatial-reduction attention up to its projection, written out."""
    rows, tokens, dim = x.shape
    q = attn.q(x).unflatten(2, (attn.num_heads, -1)).transpose(1, 2)
    if attn.sr_ratio > 1:
        x = attn.norm(attn.sr(tokens_to_map(x, height, width)).flatten(2).transpose(1, 2))
    k, v = attn.kv(x).unflatten(2, (2, attn.num_heads, -1)).permute(2, 0, 3, 1, 4)
    weights = (q @ k.transpose(-2, -1) * q.shape[-1] ** -0.5).softmax(-1)
    return (weights @ v).transpose(1, 2).reshape(rows, tokens, dim)


def test_the_fusion_sits_between_the_heads_and_the_shared_projection():
    torch.manual_seed(1)
    encoder = GeminiFusionEncoder(get_backbone("mit_mini"), 2)
    block, fusion = encoder.block1[0], encoder.fusion1[0]
    x = torch.randn(2 * 2, 16 * 12, 16)
    proj = block.attn.proj  # its call would fuse (the pre-hook): the projection written out
    expected = torch.nn.functional.linear(fusion(heads_output(block.attn, x, 16, 12)), proj.weight, proj.bias)
    torch.testing.assert_close(block.attn(x, 16, 12), expected, rtol=1e-5, atol=1e-6)


def test_without_its_cross_attention_output_the_encoder_is_the_plain_mit():
    torch.manual_seed(2)
    spec = get_backbone("mit_mini")
    gemini = GeminiFusionEncoder(spec, 2).eval()
    with torch.no_grad():
        for module in gemini.modules():
            if isinstance(module, torch.nn.MultiheadAttention):
                module.out_proj.weight.zero_()
                module.out_proj.bias.zero_()
    plain = MiTEncoder(spec, 2).eval()
    plain.load_state_dict({k: v for k, v in gemini.state_dict().items() if not k.startswith("fusion")})
    x = torch.randn(4, 3, 64, 48)
    with torch.no_grad():
        for ours, theirs in zip(gemini(x), plain(x), strict=True):
            torch.testing.assert_close(ours, theirs, rtol=0, atol=0)


@pytest.mark.parametrize("num_modalities", [2, 3])
def test_trains_for_two_and_three_modalities_and_every_fusion_weight_learns(num_modalities):
    check_forward_backward("geminifusion", "mit_mini", num_modalities)
    model = build("geminifusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES[:num_modalities],
                  drop_path=0.0)  # no block's branch dropped for a whole modality by chance
    out = model(torch.randn(num_modalities, 2, 3, 64, 48))
    (out.branches.logsumexp(2).mean() + out.ensemble.logsumexp(1).mean()).backward()
    for name, parameter in model.encoder.named_parameters():
        if name.startswith("fusion"):
            assert parameter.grad is not None and parameter.grad.abs().sum() > 0, name


def test_modalities_share_every_linear_and_convolution_and_keep_norms_attention_and_noise():
    three = build("geminifusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES)
    two = build("geminifusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES[:2])
    private = 0
    for name, module in three.encoder.named_modules():
        if isinstance(module, ModalLayerNorm):
            assert len(module.norms) == 3, name
            private += 2 * module.norms[0].normalized_shape[0]
        elif isinstance(module, CrossModalAttention):
            assert len(module.cross_attn) == 3 and module.k_noise.num_embeddings == module.v_noise.num_embeddings == 3
            assert len(list(module.judger.modules())) == 3, "one judger (fc1, fc2) for every direction"
            private += count(module.cross_attn[0]) + 2 * module.k_noise.embedding_dim
        elif isinstance(module, torch.nn.Linear | torch.nn.Conv2d) and ".cross_attn." not in name:
            assert not re.search(r"\.(norms|cross_attn)\.\d+", name), name
    # a third modality adds its own copy of exactly the private parts (and one alpha), no linear or convolution
    assert count(three) - count(two) == private + 1
    assert count(three.decoder) == count(two.decoder)


def test_eval_equals_train_without_drop_path_the_noise_is_the_same():
    model = build("geminifusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES[:2], drop_path=0.0)
    x = torch.randn(2 * 2, 3, 64, 48)
    with torch.no_grad():
        trained = model.encoder.train()(x)
        evaluated = model.encoder.eval()(x)
    for a, b in zip(trained, evaluated, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_the_defaults_are_the_references():
    assert params_class("geminifusion") is GeminiFusionParams
    model = build_from_params("geminifusion", None, backbone="mit_mini", num_classes=5, modalities=MODALITIES[:2])
    assert model.encoder.spec.drop_path_rate == REFERENCE_DROP_PATH == 0.4
    assert {fusion.heads for fusion in model.encoder.modules() if isinstance(fusion, CrossModalAttention)} == {8}
    assert on_meta("geminifusion", "mit_b5").encoder.spec.drop_path_rate == 0.35  # the README's MiT-B5 command
    assert on_meta("geminifusion", "mit_b4").encoder.spec.drop_path_rate == 0.4  # main.py's default
    fixed = build_from_params("geminifusion", GeminiFusionParams(heads=4, drop_path=0.1, ensemble="fixed"),
                              backbone="mit_mini", num_classes=5, modalities=MODALITIES[:2])
    assert fixed.encoder.spec.drop_path_rate == 0.1 and not fixed.alpha.requires_grad
    assert {fusion.heads for fusion in fixed.encoder.modules() if isinstance(fusion, CrossModalAttention)} == {4}


def test_geminifusion_needs_a_transformer_and_two_modalities():
    with pytest.raises(ValueError, match="'geminifusion' does not run on backbone 'resnet_mini' .* runs on mit"):
        build("geminifusion", backbone="resnet_mini", num_classes=5, modalities=MODALITIES[:2])
    with pytest.raises(ValueError, match=r"geminifusion needs at least 2 modalities, got \['rgb'\]"):
        build("geminifusion", backbone="mit_mini", num_classes=5, modalities=["rgb"])
    with pytest.raises(ValueError, match="needs 2 or more"):
        GeminiFusionEncoder(get_backbone("mit_mini"), 1)
    with pytest.raises(ValueError, match="not divisible by 5 heads"):
        build("geminifusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES[:2], heads=5)


@pytest.mark.parametrize("backbone", list_backbones(family="mit"))
def test_every_mit_sizes_imagenet_file_maps_onto_geminifusion_leaving_the_fusion_as_initialised(backbone):
    with torch.device("meta"):
        source = segformer_mit_state(backbone)
    target = on_meta("geminifusion", backbone).encoder.state_dict()
    mapped = mit_state_from_segformer(source, target, f"{backbone}.pth")
    assert set(mapped) == {key for key in target if not key.startswith("fusion")}
    assert len(source) - 2 == len({re.sub(r"\.norms\.\d+\.", ".", key) for key in mapped})  # head.* aside


def test_the_imagenet_file_loads_into_geminifusion():
    torch.manual_seed(3)
    source = segformer_mit_state("mit_mini")
    model = build("geminifusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES[:2])
    fusions = {k: v.clone() for k, v in model.encoder.state_dict().items() if k.startswith("fusion")}
    load_imagenet_weights(model, source)
    encoder = model.encoder.state_dict()
    assert torch.equal(encoder["block2.0.attn.proj.weight"], source["block2.0.attn.proj.weight"])
    assert torch.equal(encoder["block2.0.norm1.norms.1.bias"], source["block2.0.norm1.bias"])
    assert all(torch.equal(encoder[key], value) for key, value in fusions.items())


def reference_name(key: str) -> str:
    """fusionlab's key -> the reference WeTr's (written out independently of ``reference_key``)."""
    fusion = re.match(r"encoder\.fusion(\d)\.(\d+)\.(.*)", key)
    if fusion:
        stage, block, rest = fusion.groups()
        rest = re.sub(r"cross_attn\.(\d)\.", lambda m: f"cross_attn_{m[1]}_to_{1 - int(m[1])}.", rest)
        return f"encoder.block{stage}.{block}.attn.{rest.replace('judger.', 'relation_judger.0.')}"
    key = re.sub(r"\.norms\.(\d)\.", r".ln_\1.", key)
    key = re.sub(r"\.(proj|q|kv|sr|fc1|fc2)\.(weight|bias)$", r".\1.module.\2", key)
    key = key.replace(".mlp.dwconv.", ".mlp.dwconv.dwconv.")
    key = re.sub(r"linear_c\.(\d)\.", lambda m: f"linear_c{int(m[1]) + 1}.proj.", key)
    return key.replace("linear_fuse.", "linear_fuse.conv.").replace("fuse_bn.bns.0.", "linear_fuse.bn.")


def test_the_references_state_dict_maps_one_to_one_onto_geminifusions():
    model = build("geminifusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES[:2])
    ours = model.state_dict()
    reference = {f"module.{reference_name(key)}": value for key, value in ours.items()}  # saved under DDP
    assert "module.encoder.block1.0.attn.cross_attn_1_to_0.out_proj.weight" in reference
    assert "module.encoder.block4.0.attn.relation_judger.0.fc2.bias" in reference
    assert "module.decoder.linear_fuse.bn.running_var" in reference
    mapped = map_reference_state(reference)
    assert mapped.keys() == ours.keys()
    model.load_state_dict(mapped, strict=True)
    assert reference_key("block1.0.attn.k_noise.weight") == "fusion1.0.k_noise.weight"  # an encoder's alone
    assert reference_key("patch_embed1.proj.module.weight") == "patch_embed1.proj.weight"


def test_the_memory_estimate_counts_the_cross_attention_as_the_mits_attention():
    """The meta estimate over the tensors a CPU forward saves: GeminiFusion's ratio is TokenFusion's (a MiT's
    attention counts ~6% more on meta), so the cross-modal attention's activations are all counted."""
    ratios = {}
    for name in ("geminifusion", "tokenfusion"):
        estimate = sample_training_memory(name, "mit_mini", 5, ("rgb", "depth"), (64, 96))
        ratios[name] = estimate.activation_bytes_per_sample / saved_bytes_per_sample(name, "mit_mini",
                                                                                     ["rgb", "depth"], (64, 96))
    assert ratios["geminifusion"] == pytest.approx(ratios["tokenfusion"], rel=0.01)

"""GeminiFusion against the reference code's own outputs (tests/data/golden/README.md, "GeminiFusion"): the reference's
state dicts, mapped by ``gemini_fusion.map_reference_state``, load strictly into fusionlab's modules, which then give
the reference's outputs, for one block (its attention alone and the whole block) and for a whole tiny encoder."""

import json

import numpy as np
import pytest
import torch
from torch.testing import assert_close

from fusionlab.models import build
from fusionlab.models.gemini_fusion import CrossModalAttention, GeminiFusionEncoder, map_reference_state
from fusionlab.models.mit import MiTBlock, MiTSpec

ATOL = 1e-5  # float32 arithmetic in another order (batched einsums against the reference's per-sample loop)
BLOCK_PREFIX = "block1.0."  # the mapping's rules name a block by its place in the encoder


class Golden:
    def __init__(self, path):
        with np.load(path) as data:
            self.arrays = {key: data[key] for key in data.files}
        self.config = json.loads(str(self.arrays["config"]))
        self.state = {key.removeprefix("state:"): torch.from_numpy(value)
                      for key, value in self.arrays.items() if key.startswith("state:")}

    def tensor(self, key: str) -> torch.Tensor:
        return torch.from_numpy(self.arrays[key])

    def stacked_inputs(self) -> torch.Tensor:
        """The two modalities stacked along the batch, as fusionlab runs them (``[x0; x1]``)."""
        return torch.cat([self.tensor("x0"), self.tensor("x1")])


@pytest.fixture(scope="module")
def block_golden(golden_dir):
    return Golden(golden_dir / "geminifusion" / "block.npz")


@pytest.fixture(scope="module")
def encoder_golden(golden_dir):
    return Golden(golden_dir / "geminifusion" / "encoder.npz")


def fused_block(golden: Golden) -> MiTBlock:
    """fusionlab's MiT block with a ``CrossModalAttention`` hooked before its projection (as GeminiFusionEncoder hooks
    each of its blocks), the reference ``Block``'s weights loaded strictly."""
    c = golden.config
    block = MiTBlock(c["dim"], c["num_heads"], c["mlp_ratio"], c["sr_ratio"], 0.0, num_modalities=2)
    fusion = CrossModalAttention(c["dim"], 2, heads=c["n_heads"])
    block.attn.proj.register_forward_pre_hook(fusion.before_projection)
    mapped = map_reference_state({BLOCK_PREFIX + key: value for key, value in golden.state.items()})
    ours = {key.removeprefix(BLOCK_PREFIX): value for key, value in mapped.items() if key.startswith(BLOCK_PREFIX)}
    fused = {key.removeprefix("fusion1.0."): value for key, value in mapped.items() if key.startswith("fusion1.0.")}
    assert len(ours) + len(fused) == len(mapped) == len(golden.state)
    block.load_state_dict(ours, strict=True)
    fusion.load_state_dict(fused, strict=True)
    block.fusion = fusion  # kept with the block (its hook holds it too)
    return block.eval()


def test_block_config_is_the_reference_size(block_golden):
    assert block_golden.config["sr_ratio"] == 2 and block_golden.config["n_heads"] == 8
    assert len(block_golden.state) == 40


def test_attention_matches_the_reference(block_golden):
    """The reference's GeminiFusion ``Attention`` (SR self-attention, judger, both directions' MHA, noise, proj)."""
    block = fused_block(block_golden)
    c = block_golden.config
    with torch.no_grad():
        y0, y1 = block.attn(block_golden.stacked_inputs(), c["height"], c["width"]).chunk(2)
    assert_close(y0, block_golden.tensor("attn_y0"), rtol=0, atol=ATOL)
    assert_close(y1, block_golden.tensor("attn_y1"), rtol=0, atol=ATOL)


def test_block_matches_the_reference(block_golden):
    block = fused_block(block_golden)
    c = block_golden.config
    with torch.no_grad():
        y0, y1 = block(block_golden.stacked_inputs(), c["height"], c["width"]).chunk(2)
    assert_close(y0, block_golden.tensor("block_y0"), rtol=0, atol=ATOL)
    assert_close(y1, block_golden.tensor("block_y1"), rtol=0, atol=ATOL)


def test_the_directions_are_not_interchangeable(block_golden):
    """The golden vectors tell the two directions apart: swapping the reference's cross_attn_0_to_1 and
    cross_attn_1_to_0 (or the noise rows) changes the outputs far beyond the tolerance."""
    swapped = Golden.__new__(Golden)
    swapped.arrays, swapped.config = block_golden.arrays, block_golden.config
    swapped.state = dict(block_golden.state)
    for part in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"):
        a, b = f"attn.cross_attn_0_to_1.{part}", f"attn.cross_attn_1_to_0.{part}"
        swapped.state[a], swapped.state[b] = block_golden.state[b], block_golden.state[a]
    block = fused_block(swapped)
    c = block_golden.config
    with torch.no_grad():
        y0, _ = block.attn(block_golden.stacked_inputs(), c["height"], c["width"]).chunk(2)
    assert (y0 - block_golden.tensor("attn_y0")).abs().max() > 100 * ATOL


def encoder_spec(golden: Golden) -> MiTSpec:
    c = golden.config
    assert set(c["mlp_ratios"]) == {4} and c["patch_size"] == 4 and c["in_chans"] == 3 and c["qkv_bias"]
    return MiTSpec(tuple(c["embed_dims"]), tuple(c["num_heads"]), tuple(c["depths"]), tuple(c["sr_ratios"]),
                   mlp_ratio=4, drop_path_rate=0.0)


def test_encoder_matches_the_reference(encoder_golden):
    """The reference's MixVisionTransformer with GeminiFusion (two blocks in stage 1, one in each other stage):
    every stage's output, both modalities."""
    encoder = GeminiFusionEncoder(encoder_spec(encoder_golden), 2, 3, heads=encoder_golden.config["n_heads"])
    encoder.load_state_dict(map_reference_state(encoder_golden.state), strict=True)
    encoder.eval()
    with torch.no_grad():
        features = encoder(encoder_golden.stacked_inputs())
    assert len(features) == 4
    for stage, feature in enumerate(features, start=1):
        for modality, ours in enumerate(feature.chunk(2)):
            assert_close(ours, encoder_golden.tensor(f"y{modality}_s{stage}"), rtol=0, atol=ATOL)


@pytest.mark.parametrize(("backbone", "reference_count"), [("mit_b3", 74_551_274), ("mit_b5", 137_209_322)])
def test_parameter_counts_are_the_references(backbone, reference_count):
    """The reference's WeTr at 40 classes (encoder, SegFormerHead, alpha), counted by make_golden.py --counts on the
    meta device; fusionlab's built there too."""
    with torch.device("meta"):
        model = build("geminifusion", backbone=backbone, num_classes=40, modalities=["rgb", "depth"])
    assert sum(p.numel() for p in model.parameters()) == reference_count

"""FIDInceptionV3 has exactly the layout of pytorch-fid's weight file, and load_inception refuses what is not it."""

import pytest
import torch

from fusionlab.errors import FusionlabError
from fusionlab.fid import INCEPTION_FILE, INCEPTION_URL, FIDInceptionV3, InceptionWeightsError, load_inception


def _conv_specs() -> dict[str, tuple[int, int, int, int]]:
    """BasicConv2d name -> (in, out, kh, kw), written from torchvision's Inception3 description (not from the code
    under test): the layout pytorch-fid loads its weights into (num_classes=1008, aux_logits=False)."""
    specs = {
        "Conv2d_1a_3x3": (3, 32, 3, 3), "Conv2d_2a_3x3": (32, 32, 3, 3), "Conv2d_2b_3x3": (32, 64, 3, 3),
        "Conv2d_3b_1x1": (64, 80, 1, 1), "Conv2d_4a_3x3": (80, 192, 3, 3),
    }

    def block_a(name, c_in, pool):
        specs.update({f"{name}.branch1x1": (c_in, 64, 1, 1), f"{name}.branch5x5_1": (c_in, 48, 1, 1),
                      f"{name}.branch5x5_2": (48, 64, 5, 5), f"{name}.branch3x3dbl_1": (c_in, 64, 1, 1),
                      f"{name}.branch3x3dbl_2": (64, 96, 3, 3), f"{name}.branch3x3dbl_3": (96, 96, 3, 3),
                      f"{name}.branch_pool": (c_in, pool, 1, 1)})
        return 64 + 64 + 96 + pool

    def block_c(name, c7):
        specs.update({f"{name}.branch1x1": (768, 192, 1, 1), f"{name}.branch7x7_1": (768, c7, 1, 1),
                      f"{name}.branch7x7_2": (c7, c7, 1, 7), f"{name}.branch7x7_3": (c7, 192, 7, 1),
                      f"{name}.branch7x7dbl_1": (768, c7, 1, 1), f"{name}.branch7x7dbl_2": (c7, c7, 7, 1),
                      f"{name}.branch7x7dbl_3": (c7, c7, 1, 7), f"{name}.branch7x7dbl_4": (c7, c7, 7, 1),
                      f"{name}.branch7x7dbl_5": (c7, 192, 1, 7), f"{name}.branch_pool": (768, 192, 1, 1)})

    def block_e(name, c_in):
        specs.update({f"{name}.branch1x1": (c_in, 320, 1, 1), f"{name}.branch3x3_1": (c_in, 384, 1, 1),
                      f"{name}.branch3x3_2a": (384, 384, 1, 3), f"{name}.branch3x3_2b": (384, 384, 3, 1),
                      f"{name}.branch3x3dbl_1": (c_in, 448, 1, 1), f"{name}.branch3x3dbl_2": (448, 384, 3, 3),
                      f"{name}.branch3x3dbl_3a": (384, 384, 1, 3), f"{name}.branch3x3dbl_3b": (384, 384, 3, 1),
                      f"{name}.branch_pool": (c_in, 192, 1, 1)})

    c = block_a("Mixed_5b", 192, 32)
    c = block_a("Mixed_5c", c, 64)
    c = block_a("Mixed_5d", c, 64)
    assert c == 288
    specs.update({"Mixed_6a.branch3x3": (288, 384, 3, 3), "Mixed_6a.branch3x3dbl_1": (288, 64, 1, 1),
                  "Mixed_6a.branch3x3dbl_2": (64, 96, 3, 3), "Mixed_6a.branch3x3dbl_3": (96, 96, 3, 3)})
    for name, c7 in (("Mixed_6b", 128), ("Mixed_6c", 160), ("Mixed_6d", 160), ("Mixed_6e", 192)):
        block_c(name, c7)
    specs.update({"Mixed_7a.branch3x3_1": (768, 192, 1, 1), "Mixed_7a.branch3x3_2": (192, 320, 3, 3),
                  "Mixed_7a.branch7x7x3_1": (768, 192, 1, 1), "Mixed_7a.branch7x7x3_2": (192, 192, 1, 7),
                  "Mixed_7a.branch7x7x3_3": (192, 192, 7, 1), "Mixed_7a.branch7x7x3_4": (192, 192, 3, 3)})
    c = 384 + 96 + c  # Mixed_6a: 768, kept by the C blocks (4 x 192)
    c = 320 + 192 + c  # Mixed_7a: 1280
    block_e("Mixed_7b", c)
    block_e("Mixed_7c", 320 + 2 * 384 + 2 * 384 + 192)
    return specs


def _expected_state() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for name, (c_in, c_out, kh, kw) in _conv_specs().items():
        shapes[f"{name}.conv.weight"] = (c_out, c_in, kh, kw)
        for buf in ("weight", "bias", "running_mean", "running_var"):
            shapes[f"{name}.bn.{buf}"] = (c_out,)
        shapes[f"{name}.bn.num_batches_tracked"] = ()
    shapes["fc.weight"] = (1008, 2048)
    shapes["fc.bias"] = (1008,)
    return shapes


def test_state_dict_matches_the_pytorch_fid_layout():
    state = FIDInceptionV3().state_dict()
    expected = _expected_state()
    assert sorted(state) == sorted(expected)
    assert {k: tuple(v.shape) for k, v in state.items()} == expected
    assert not any(k.startswith("AuxLogits") for k in state)
    # A handful spelled out, as they appear in pt_inception-2015-12-05-6726825d.pth.
    assert state["Conv2d_1a_3x3.conv.weight"].shape == (32, 3, 3, 3)
    assert state["Mixed_5b.branch1x1.conv.weight"].shape == (64, 192, 1, 1)
    assert state["Mixed_6e.branch7x7dbl_5.conv.weight"].shape == (192, 192, 1, 7)
    assert state["Mixed_7c.branch_pool.conv.weight"].shape == (192, 2048, 1, 1)
    assert state["fc.weight"].shape == (1008, 2048)


def test_parameter_count_is_the_reference_models():
    from_specs = sum(c_out * c_in * kh * kw + 2 * c_out for c_in, c_out, kh, kw in _conv_specs().values())
    from_specs += 1008 * 2048 + 1008
    # torchvision's inception_v3 (1000 classes, with AuxLogits) has 27,161,264 parameters (its model card);
    # pytorch-fid's model drops AuxLogits (conv0 768->128 1x1, conv1 128->768 5x5, fc 768->1000) and has 1008 classes.
    aux = (768 * 128 + 2 * 128) + (128 * 768 * 25 + 2 * 768) + (768 * 1000 + 1000)
    reference = 27_161_264 - aux + 8 * 2048 + 8
    model = FIDInceptionV3()
    assert sum(p.numel() for p in model.parameters()) == from_specs == reference


def test_fid_patches_pool_branches():
    import fusionlab.fid.inception as inc

    model = FIDInceptionV3()
    assert (model.Mixed_7b.max_pool, model.Mixed_7c.max_pool) == (False, True)  # pytorch-fid's FIDInceptionE_1/E_2
    # Padding is not counted by the average pools: a constant map stays constant up to the border.
    ones = torch.ones(1, 1, 5, 5)
    assert torch.allclose(inc._avg_pool_no_pad(ones), ones)
    assert not torch.allclose(torch.nn.functional.avg_pool2d(ones, 3, 1, 1), ones)  # what torchvision's would do


def test_saved_state_dict_loads_and_gives_pool3_features(tmp_path):
    torch.manual_seed(1)
    model = FIDInceptionV3()
    path = tmp_path / INCEPTION_FILE
    torch.save(model.state_dict(), path)
    loaded = load_inception(path)
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v), k
    images = torch.rand(2, 3, 64, 80)
    feats = loaded.features(images)
    assert feats.shape == (2, 2048) and feats.dtype == torch.float32
    assert torch.isfinite(feats).all() and (feats >= 0).all()  # after ReLU and an average pool
    assert not loaded.training and not any(p.requires_grad for p in loaded.parameters())
    assert torch.allclose(feats, model.features(images).detach())


def test_weights_without_num_batches_tracked_still_load(tmp_path):
    # The 2015 port may predate BatchNorm's num_batches_tracked buffer.
    state = {k: v for k, v in FIDInceptionV3().state_dict().items() if not k.endswith("num_batches_tracked")}
    torch.save(state, tmp_path / "w.pth")
    assert isinstance(load_inception(tmp_path / "w.pth"), FIDInceptionV3)


def test_missing_file_names_the_path_the_file_and_the_url(tmp_path):
    path = tmp_path / "nowhere" / INCEPTION_FILE
    with pytest.raises(FileNotFoundError) as err:
        load_inception(path)
    assert isinstance(err.value, FusionlabError)
    msg = str(err.value)
    assert str(path) in msg and INCEPTION_FILE in msg and INCEPTION_URL in msg
    assert "FUSIONLAB_INCEPTION_WEIGHTS" in msg


def test_wrong_keys_are_refused_with_the_key_named(tmp_path):
    state = FIDInceptionV3().state_dict()
    state["Mixed_5b.branch1x1.kernel"] = state.pop("Mixed_5b.branch1x1.conv.weight")
    path = tmp_path / "wrong.pth"
    torch.save(state, path)
    with pytest.raises(InceptionWeightsError) as err:
        load_inception(path)
    msg = str(err.value)
    assert str(path) in msg
    assert "Mixed_5b.branch1x1.conv.weight" in msg and "Mixed_5b.branch1x1.kernel" in msg


def test_wrong_shape_and_non_state_dict_files_are_refused(tmp_path):
    state = FIDInceptionV3().state_dict()
    state["fc.weight"] = torch.zeros(1000, 2048)
    torch.save(state, tmp_path / "shape.pth")
    with pytest.raises(InceptionWeightsError, match=r"fc\.weight \(1000, 2048\)"):
        load_inception(tmp_path / "shape.pth")
    (tmp_path / "page.pth").write_text("<html>Not Found</html>")
    with pytest.raises(InceptionWeightsError, match="page.pth"):
        load_inception(tmp_path / "page.pth")


def test_features_refuse_images_outside_unit_range():
    with pytest.raises(FusionlabError, match=r"\[0, 1\]"):
        FIDInceptionV3().features(torch.full((1, 3, 32, 32), 255.0))

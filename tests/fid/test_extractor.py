"""Choosing the extractor, and the local stand-in's determinism and sensitivity."""

import pytest
import torch
import torch.nn.functional as F

from fusionlab.errors import FusionlabError
from fusionlab.fid import (
    INCEPTION_FILE,
    INCEPTION_NAME,
    FeatureExtractor,
    FIDInceptionV3,
    LocalFeatures,
    extract,
    frechet_distance,
    resolve_extractor,
)


@pytest.fixture
def no_weights(tmp_path, monkeypatch):
    monkeypatch.delenv("FUSIONLAB_INCEPTION_WEIGHTS", raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    return tmp_path


def test_auto_without_weights_is_local(no_weights):
    ext = resolve_extractor()
    assert isinstance(ext, LocalFeatures) and isinstance(ext, FeatureExtractor)
    assert "not comparable" in ext.name and "inception" not in ext.name.lower()
    assert isinstance(resolve_extractor("local"), LocalFeatures)


def test_inception_without_weights_is_a_clear_error(no_weights):
    with pytest.raises(FileNotFoundError) as err:
        resolve_extractor("inception")
    msg = str(err.value)
    assert str(no_weights / ".cache" / "fusionlab" / INCEPTION_FILE) in msg and "FUSIONLAB_INCEPTION_WEIGHTS" in msg
    with pytest.raises(FusionlabError, match="elsewhere.pth"):
        resolve_extractor("auto", weights=no_weights / "elsewhere.pth")  # a named file must exist
    with pytest.raises(FusionlabError, match="kind"):
        resolve_extractor("tensorflow")


def test_inception_weights_from_env_or_cache(no_weights, monkeypatch):
    state = FIDInceptionV3().state_dict()
    env_path = no_weights / "w.pth"
    torch.save(state, env_path)
    monkeypatch.setenv("FUSIONLAB_INCEPTION_WEIGHTS", str(env_path))
    ext = resolve_extractor("auto")
    assert isinstance(ext, FIDInceptionV3) and ext.name == INCEPTION_NAME
    monkeypatch.delenv("FUSIONLAB_INCEPTION_WEIGHTS")
    cache = no_weights / ".cache" / "fusionlab"
    cache.mkdir(parents=True)
    env_path.rename(cache / INCEPTION_FILE)
    assert isinstance(resolve_extractor("inception"), FIDInceptionV3)
    assert isinstance(resolve_extractor("local", weights=cache / INCEPTION_FILE), LocalFeatures)


def test_local_features_are_deterministic_and_ignore_the_global_rng():
    images = torch.rand(4, 3, 40, 48)
    torch.manual_seed(123)
    first = LocalFeatures()
    state = torch.get_rng_state()
    torch.manual_seed(456)
    second = LocalFeatures()
    assert torch.equal(first.features(images), second.features(images))
    torch.manual_seed(123)
    LocalFeatures()
    assert torch.equal(torch.get_rng_state(), state)  # building one draws nothing from the global RNG
    assert first.features(images).shape == (4, first.feature_dim)
    with pytest.raises(FusionlabError, match="16"):
        first.features(torch.rand(1, 3, 8, 8))


def _smooth_images(n: int, gen: torch.Generator, size: int = 32) -> torch.Tensor:
    """'Real' images: random low-frequency colour fields, blurred up from 4x4."""
    low = torch.rand(n, 3, 4, 4, generator=gen)
    return F.interpolate(low, size=(size, size), mode="bicubic", align_corners=False).clamp(0, 1)


def test_local_fid_separates_noise_from_real_images():
    gen = torch.Generator().manual_seed(7)
    ext = LocalFeatures()
    real = extract(ext, _smooth_images(300, gen), batch_size=64)
    real2 = extract(ext, _smooth_images(300, gen), batch_size=64)
    noise = extract(ext, torch.rand(300, 3, 32, 32, generator=gen), batch_size=64)
    assert real.dtype == torch.float64 and real.shape == (300, ext.feature_dim)
    same, different = frechet_distance(real, real2), frechet_distance(real, noise)
    assert different > 10 * same


def test_extract_batches_match_one_pass_and_take_uint8():
    ext = LocalFeatures()
    images = torch.rand(10, 3, 20, 20)
    whole = ext.features(images).double()
    assert torch.allclose(extract(ext, images, batch_size=3), whole, atol=1e-6)
    as_bytes = (images * 255).round().to(torch.uint8)
    assert torch.allclose(extract(ext, as_bytes, batch_size=4), ext.features(as_bytes.float() / 255).double(),
                          atol=1e-6)
    with pytest.raises(FusionlabError, match=r"\[N, 3, H, W\]"):
        extract(ext, torch.rand(3, 20, 20))

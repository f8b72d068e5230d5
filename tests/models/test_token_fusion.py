"""TokenFusion on the Mix Transformer: the exchange equals the reference's on its golden vectors
(tests/models/data/tokenfusion_exchange.npz, made by running its TokenExchange), θ = 0 exchanges nothing and θ = 1
every token, the model trains for M = 2 and 3 with its L1 penalty on the scores, and its sizes equal the reference's."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from fusionlab.models import build, get_backbone
from fusionlab.models.params import TokenFusionParams
from fusionlab.models.registry import build_from_params, params_class
from fusionlab.models.token_fusion import REFERENCE_THRESHOLD, TokenFusionEncoder, exchange_tokens
from fusionlab.train.steps import model_statistics

DATA = Path(__file__).parent / "data"
REFERENCE_COUNTS = json.loads((DATA / "tokenfusion_counts.json").read_text())["counts"]
MODALITIES = ["rgb", "depth", "hha"]


def test_the_exchange_is_the_references_on_its_golden_vectors():
    golden = np.load(DATA / "tokenfusion_exchange.npz")
    out = exchange_tokens(torch.from_numpy(golden["x"]), torch.from_numpy(golden["keep"]), float(golden["threshold"]))
    torch.testing.assert_close(out, torch.from_numpy(golden["out"]), rtol=0, atol=0)
    assert float(golden["threshold"]) == REFERENCE_THRESHOLD


def test_for_three_modalities_a_replaced_token_is_the_mean_of_the_others_scored_tokens():
    torch.manual_seed(0)
    x, keep = torch.randn(3, 2, 7, 4), torch.rand(3, 2, 7)
    out = exchange_tokens(x, keep, 0.5)
    scored = x * keep.unsqueeze(-1)
    for m in range(3):
        others = torch.stack([scored[o] for o in range(3) if o != m]).mean(0)
        expected = torch.where((keep[m] < 0.5).unsqueeze(-1), others, scored[m])
        torch.testing.assert_close(out[m], expected)


def build_tokenfusion(num_modalities: int, **params) -> torch.nn.Module:
    return build("tokenfusion", backbone="mit_mini", num_classes=5, modalities=MODALITIES[:num_modalities], **params)


@pytest.mark.parametrize("num_modalities", [2, 3])
def test_tokenfusion_trains_and_its_penalty_reaches_every_score_predictor(num_modalities):
    model = build_tokenfusion(num_modalities)
    out = model(torch.randn(num_modalities, 2, 3, 64, 96))
    assert out.branches.shape == (num_modalities, 2, 5, 16, 24) and out.ensemble.shape == (2, 5, 16, 24)
    penalty = model.regularization_loss()
    scores = model.encoder.scores
    assert len(scores) == sum(model.encoder.spec.depths) and scores[0].shape[0] == num_modalities
    assert penalty.detach().item() == pytest.approx(1e-4 * sum(float(s.detach().sum()) for s in scores))
    (out.branches.logsumexp(2).mean() + out.ensemble.logsumexp(1).mean() + penalty).backward()
    for key, parameter in model.named_parameters():
        assert parameter.grad is not None and torch.isfinite(parameter.grad).all(), key
    assert all(p.grad.abs().sum() > 0 for p in model.encoder.score_predictor.parameters())


@pytest.mark.parametrize(("threshold", "fraction"), [(0.0, 0.0), (1.0, 1.0)])
def test_threshold_zero_exchanges_nothing_and_one_every_token(threshold, fraction):
    model = build_tokenfusion(2, threshold=threshold).eval()
    with torch.no_grad():
        model(torch.randn(2, 2, 3, 64, 96))
    stats = model_statistics(model)
    assert stats["exchange/fraction"] == fraction
    assert {key: value for key, value in stats.items() if key.startswith("exchange/fraction/")} == {
        f"exchange/fraction/stage{stage}": fraction for stage in range(1, 5)}
    assert model_statistics(model).get("exchange/fraction") is None, "counted again from the next forward"


def test_the_defaults_are_the_references_and_the_penalty_weight_reaches_the_model():
    assert params_class("tokenfusion") is TokenFusionParams
    model = build_from_params("tokenfusion", None, backbone="mit_mini", num_classes=5, modalities=["rgb", "depth"])
    assert model.l1_lambda == 1e-4 and model.encoder.threshold == REFERENCE_THRESHOLD
    tuned = build_from_params("tokenfusion", TokenFusionParams(lambda_=3e-3, threshold=0.1), backbone="mit_mini",
                              num_classes=5, modalities=["rgb", "depth"])
    assert tuned.l1_lambda == 3e-3 and tuned.encoder.threshold == 0.1


@pytest.mark.parametrize("backbone", sorted(REFERENCE_COUNTS))
def test_sizes_equal_the_references_wetr(backbone):
    with torch.device("meta"):
        model = build("tokenfusion", backbone=backbone, num_classes=40, modalities=["rgb", "depth"])
    reference = REFERENCE_COUNTS[backbone]
    count = sum(p.numel() for p in model.parameters())
    assert count == reference["model"]
    assert sum(p.numel() for p in model.encoder.score_predictor.parameters()) == reference["score_predictors"]


def test_tokenfusion_needs_a_transformer_and_two_modalities():
    with pytest.raises(ValueError, match="'tokenfusion' does not run on backbone 'resnet_mini' .* runs on mit"):
        build("tokenfusion", backbone="resnet_mini", num_classes=5, modalities=["rgb", "depth"])
    with pytest.raises(ValueError, match=r"tokenfusion needs at least 2 modalities, got \['rgb'\]"):  # the registry's
        build("tokenfusion", backbone="mit_mini", num_classes=5, modalities=["rgb"])
    with pytest.raises(ValueError, match="needs 2 or more"):  # and the encoder's own, below it
        TokenFusionEncoder(get_backbone("mit_mini"), 1)

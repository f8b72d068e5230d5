"""CEN's L1 pressure equals the reference's: yikaiw/CEN (semantic_segmentation/main.py, train()) adds
``lamda * L1_norm`` inside its loop over the M + 1 outputs, on the bn2 weights' halves (RGB the first, depth the
second). fusionlab adds one term of weight lambda * (M + 1) (penalty per_output), or lambda = None resolved to
the same 6e-4 (penalty once). Compared in float64, gradient by gradient, on one forward pass."""

import pytest
import torch
import torch.nn.functional as F
from train_configs import config_tree

from fusionlab.data import Manifest
from fusionlab.train.losses import segmentation_loss
from fusionlab.train.prepare import parse_config
from fusionlab.train.segmentation_task import build_model

IGNORE = 255


def reference_loss(outputs, target, model, lamda):
    """The reference's train() loss, line for line (NLLLoss of LogSoftmax = cross-entropy)."""
    slim_params = []
    for name, param in model.named_parameters():
        if param.requires_grad and name.endswith("weight") and "bn2" in name:
            if len(slim_params) % 2 == 0:
                slim_params.append(param[: len(param) // 2])
            else:
                slim_params.append(param[len(param) // 2:])
    loss = 0
    for output in outputs:
        output = F.interpolate(output, size=target.size()[1:], mode="bilinear", align_corners=False)
        loss += F.nll_loss(F.log_softmax(output, dim=1), target, ignore_index=IGNORE)
        loss += lamda * sum(param.abs().sum() for param in slim_params)  # counted once per output
    return loss


def cen_model(data, **cen):
    tree = {**config_tree(data, model={"params": cen}), "recipe": "reference"}
    config = parse_config(tree)
    torch.manual_seed(0)
    model = build_model(config, Manifest.load(data)).double()
    with torch.no_grad():  # gammas of both signs and away from 0, where |gamma| has a gradient
        for name, param in model.named_parameters():
            if "bn2" in name and name.endswith("weight"):
                param.copy_(torch.randn_like(param).sign() * (0.05 + torch.rand_like(param)))
    return config, model


def gradients(loss, params):
    return torch.autograd.grad(loss, params, retain_graph=True)


@pytest.mark.parametrize("cen,effective", [({"lambda": 2e-4, "penalty": "per_output"}, 6e-4),
                                           ({"lambda": None, "penalty": "once"}, 6e-4)],
                         ids=["per_output-2e-4", "once-default"])
def test_the_gradient_on_every_bn2_gamma_is_the_references(small_synthetic, cen, effective):
    config, model = cen_model(small_synthetic, **cen)
    assert config.flat()["model.params.effective_lambda"] == pytest.approx(effective, rel=1e-12)
    model.eval()  # no dropout: both losses read the same forward anyway
    generator = torch.Generator().manual_seed(1)
    image = torch.randn(2, 2, 3, 32, 40, generator=generator, dtype=torch.float64)
    target = torch.randint(0, model.num_classes, (2, 32, 40), generator=generator)
    target[:, :4] = IGNORE
    output = model(image)

    gammas = [param for name, param in model.named_parameters() if "bn2" in name and name.endswith("weight")]
    assert len(gammas) == 2 * 8  # resnet_mini: 8 bottlenecks, one bn2 per modality
    ours, _ = segmentation_loss(output, target, model, IGNORE)
    theirs = reference_loss([*output.branches, output.ensemble], target, model, lamda=2e-4)
    for mine, reference in zip(gradients(ours, gammas), gradients(theirs, gammas), strict=True):
        torch.testing.assert_close(mine, reference, rtol=0, atol=1e-10)
    assert float(ours.detach()) == pytest.approx(float(theirs.detach()), rel=1e-12)

    # The check has teeth: the penalty added once at 2e-4 misses the reference by 2 * 2e-4 per penalised gamma.
    _, weak = cen_model(small_synthetic, **{**cen, "lambda": 2e-4, "penalty": "once"})
    weak.load_state_dict(model.state_dict())
    weak.eval()
    weak_gammas = [param for name, param in weak.named_parameters() if "bn2" in name and name.endswith("weight")]
    weak_loss, _ = segmentation_loss(weak(image), target, weak, IGNORE)
    gap = max(float((a - b).abs().max()) for a, b in zip(gradients(weak_loss, weak_gammas),
                                                         gradients(theirs, gammas), strict=True))
    assert gap == pytest.approx(4e-4, rel=1e-6)

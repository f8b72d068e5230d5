"""The training objective (docs/training.md): cross-entropy on every branch and on the ensemble, plus the model's own
regularisation (CEN's lambda * sum |gamma| over the penalised portion), added once."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from fusionlab.models import FusionModel, FusionOutput


def upsample(logits: torch.Tensor, size: tuple[int, int], mode: str = "bilinear") -> torch.Tensor:
    """Logits at 1/4 resolution -> the label's resolution: bilinear, as the references' training loss; scoring may
    ask for bicubic (``model.eval_upsample``), as the references' cv2.resize(INTER_CUBIC) evaluation."""
    if tuple(logits.shape[-2:]) == tuple(size):
        return logits
    return F.interpolate(logits, size=size, mode=mode, align_corners=False)


def segmentation_loss(output: FusionOutput, label: torch.Tensor, model: FusionModel,
                      ignore_index: int = 255) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    size = tuple(label.shape[-2:])
    branch_losses = [F.cross_entropy(upsample(branch, size), label, ignore_index=ignore_index)
                     for branch in output.branches]
    ensemble_loss = F.cross_entropy(upsample(output.ensemble, size), label, ignore_index=ignore_index)
    regularization = model.regularization_loss()
    total = torch.stack(branch_losses).sum() + ensemble_loss + regularization
    # Detached tensors, not floats: converting here would synchronise the host with the device every step.
    parts = {"ensemble": ensemble_loss.detach(), "regularization": regularization.detach()}
    parts.update({f"branch{i}": loss.detach() for i, loss in enumerate(branch_losses)})
    return total, parts

"""The errors of loading a pretrained weights file, in a module of their own: ``pretrained.py`` (the loading),
``pretrained_mit.py`` (SegFormer's files) and ``pretrained_release.py`` (torchvision's releases) all raise them, and
none of them need import another for it."""

from __future__ import annotations

from fusionlab.errors import FusionlabError


class PretrainedWeightsError(FusionlabError):
    """A weights file that is missing, unreadable or does not fit the encoder: the user's to fix, the same on every
    attempt, so Ray Train does not restart the worker group for it (``train/failures.py``)."""


class PretrainedReleaseError(PretrainedWeightsError):
    """A weights file of another release than ``model.pretrained_version`` asks for, or of no known release."""


def preview(keys: list[str], limit: int = 8) -> str:
    """The first ``limit`` of ``keys``, and how many more, for an error message."""
    shown = ", ".join(keys[:limit])
    return shown + (f", ... ({len(keys) - limit} more)" if len(keys) > limit else "")

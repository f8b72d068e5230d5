"""Multimodal fusion models. Imports torch only: no Ray, no MLflow."""

from . import zoo as _zoo  # noqa: F401  (registers the models)
from .modal import ModalBatchNorm2d, SharedConv2d, set_modality_loop
from .pretrained import PretrainedWeightsError, load_imagenet_resnet
from .registry import build, list_models, register_model
from .resnet import BACKBONES, get_backbone
from .segmenter import FusionModel, FusionOutput
from .sparsity import exchange_statistics, l1_penalty, overall_exchanged_fraction
from .summary import count_parameters, summarize

__all__ = [
    "BACKBONES", "FusionModel", "FusionOutput", "ModalBatchNorm2d", "PretrainedWeightsError", "SharedConv2d",
    "build", "count_parameters", "exchange_statistics", "get_backbone", "l1_penalty", "list_models",
    "load_imagenet_resnet", "overall_exchanged_fraction", "register_model", "set_modality_loop", "summarize",
]

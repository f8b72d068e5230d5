"""Inference with a logged or registered model on an Arrow dataset or a folder of aligned modality images."""

from .inputs import ArrowInputs, Batch, FolderInputs, open_inputs
from .outputs import PredictionWriter, palette
from .predict import PredictionSummary, predict

__all__ = ["ArrowInputs", "Batch", "FolderInputs", "PredictionSummary", "PredictionWriter", "open_inputs",
           "palette", "predict"]

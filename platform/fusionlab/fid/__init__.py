"""FID and KID for image translation: distances in float64, the FID InceptionV3 (weights file given by the user,
never downloaded) or a local stand-in extractor."""

from fusionlab.fid.distances import (
    feature_moments,
    frechet_distance,
    frechet_distance_from_moments,
    kernel_inception_distance,
)
from fusionlab.fid.extractor import (
    FeatureExtractor,
    default_weights_path,
    extract,
    inception_weights_path,
    resolve_extractor,
)
from fusionlab.fid.inception import (
    INCEPTION_FILE,
    INCEPTION_NAME,
    INCEPTION_URL,
    WEIGHTS_ENV,
    FIDInceptionV3,
    InceptionWeightsError,
    InceptionWeightsMissing,
    load_inception,
)
from fusionlab.fid.local import LOCAL_NAME, LocalFeatures

__all__ = [
    "FIDInceptionV3",
    "FeatureExtractor",
    "INCEPTION_FILE",
    "INCEPTION_NAME",
    "INCEPTION_URL",
    "InceptionWeightsError",
    "InceptionWeightsMissing",
    "LOCAL_NAME",
    "LocalFeatures",
    "WEIGHTS_ENV",
    "default_weights_path",
    "extract",
    "feature_moments",
    "frechet_distance",
    "frechet_distance_from_moments",
    "inception_weights_path",
    "kernel_inception_distance",
    "load_inception",
    "resolve_extractor",
]

"""fusionlab: deep multimodal fusion (CEN, AsymFusion) trained, tuned and tracked on Ray and MLflow."""

__version__ = "0.1.0"

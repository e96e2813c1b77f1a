"""BiSeNetFormer network, pre-/post-processing, model files and cost accounting (ROS-free core)."""

from bisenetformer_ros.model.bisenetformer import BiSeNetFormer, InferenceWrapper, build_model
from bisenetformer_ros.model.checkpoint import LoadedModel, load_model, save_model
from bisenetformer_ros.model.config import BACKBONES, ModelConfig
from bisenetformer_ros.model.postprocess import (
    InstanceResult,
    PanopticResult,
    PostprocessConfig,
    Segment,
    SegmentationOutput,
    postprocess_batch,
)
from bisenetformer_ros.model.preprocess import PreprocessMeta, Preprocessor

__all__ = [
    "BACKBONES",
    "BiSeNetFormer",
    "InferenceWrapper",
    "InstanceResult",
    "LoadedModel",
    "ModelConfig",
    "PanopticResult",
    "PostprocessConfig",
    "PreprocessMeta",
    "Preprocessor",
    "Segment",
    "SegmentationOutput",
    "build_model",
    "load_model",
    "postprocess_batch",
    "save_model",
]

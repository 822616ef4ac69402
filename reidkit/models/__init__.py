"""reidkit.models: backbones, attention, pooling, the BNNeck, margin heads, weight loading and the re-ID model.

    model = build_model({"backbone": "resnet50", "pooling": "gem"}, num_classes=751)   # see MODEL_DEFAULTS
"""
from __future__ import annotations

from reidkit.models.attention import ATTENTION, build_attention
from reidkit.models.backbones import BACKBONES, OSNET_NAMES, Backbone, build_backbone
from reidkit.models.lightmbn import LightMBN
from reidkit.models.heads import (
    HEADS,
    ArcFace,
    CircleSoftmax,
    ClassifierHead,
    CosSoftmax,
    LinearHead,
    arcface_logits,
    build_head,
    circle_logits,
    cosface_logits,
)
from reidkit.models.neck import BNNeck
from reidkit.models.pooling import POOLING, GeM, GlobalAvgPool, GlobalMaxPool, build_pooling
from reidkit.models.reid_model import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    MODEL_DEFAULTS,
    ReIDModel,
    ReIDOutput,
    build_model,
    resolve_model_config,
)
from reidkit.models.weights import LoadReport, load_pretrained, read_checkpoint, resolve_weights, weights_dir

__all__ = [
    "ATTENTION",
    "BACKBONES",
    "HEADS",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "MODEL_DEFAULTS",
    "OSNET_NAMES",
    "POOLING",
    "ArcFace",
    "BNNeck",
    "Backbone",
    "CircleSoftmax",
    "ClassifierHead",
    "CosSoftmax",
    "GeM",
    "GlobalAvgPool",
    "GlobalMaxPool",
    "LightMBN",
    "LinearHead",
    "LoadReport",
    "ReIDModel",
    "ReIDOutput",
    "arcface_logits",
    "build_attention",
    "build_backbone",
    "build_head",
    "build_model",
    "build_pooling",
    "circle_logits",
    "cosface_logits",
    "load_pretrained",
    "read_checkpoint",
    "resolve_model_config",
    "resolve_weights",
    "weights_dir",
]

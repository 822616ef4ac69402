"""Re-ID transforms (components.md §9): explicit order, pixel-space fills, reproducible randomness.

Every random transform is called as ``t(img, generator=None)`` and draws only from that
``torch.Generator`` (torch's global RNG when ``None``, which DataLoader workers seed per worker);
``apply_with_seed(t, img, seed)`` reproduces a sample exactly.
"""
from reidkit.data.transforms.autoaugment import (
    IMAGENET_ORIGINAL_POLICY,
    AugmentOp,
    AutoAugment,
    apply_op,
    level_to_arg,
)
from reidkit.data.transforms.base import (
    CIFAR_MEAN,
    IMAGENET_MEAN,
    IMAGENET_STD,
    Compose,
    Transform,
    apply_with_seed,
)
from reidkit.data.transforms.build import CROPS, LGT_SPACES, TransformConfig, as_transform_config, build_transforms
from reidkit.data.transforms.erasing import FILL_SPACES, LGT, Cutout, RandomErasing, Rect, luma, sample_rectangle
from reidkit.data.transforms.geometric import (
    INTERPOLATIONS,
    Pad,
    Random2DTranslation,
    RandomCrop,
    RandomHorizontalFlip,
    Resize,
)
from reidkit.data.transforms.tensor import Normalize, ToTensor, denormalize, normalize, to_uint8_image

__all__ = [
    "CIFAR_MEAN",
    "CROPS",
    "FILL_SPACES",
    "IMAGENET_MEAN",
    "IMAGENET_ORIGINAL_POLICY",
    "IMAGENET_STD",
    "INTERPOLATIONS",
    "LGT",
    "LGT_SPACES",
    "AugmentOp",
    "AutoAugment",
    "Compose",
    "Cutout",
    "Normalize",
    "Pad",
    "Random2DTranslation",
    "RandomCrop",
    "RandomErasing",
    "RandomHorizontalFlip",
    "Rect",
    "Resize",
    "ToTensor",
    "Transform",
    "TransformConfig",
    "apply_op",
    "apply_with_seed",
    "as_transform_config",
    "build_transforms",
    "denormalize",
    "level_to_arg",
    "luma",
    "normalize",
    "sample_rectangle",
    "to_uint8_image",
]

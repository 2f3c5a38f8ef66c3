"""The pretrained families, one record each (timm's model-registry habit): the keras.applications
constructor and preprocessing by name, whether it has a width (alpha), and the names of its
published no-top weight files. No TensorFlow here: the space, the CLI and the weights lookup
read these without importing it; search.model.backbones resolves the names when it builds a
network. Here, not in model/, because the space's name lists come from it and the model reads
the space."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


def _alpha(a: float) -> str:
    return f"{a:g}" if a != 1 else "1.0"


def _alpha_v1(a: float) -> str:
    return {0.25: "2_5", 0.5: "5_0", 0.75: "7_5", 1.0: "1_0"}.get(a, f"{a:g}")


@dataclass(frozen=True)
class Family:
    name: str
    constructor: str  # keras.applications.<constructor>
    preprocessing: str  # keras.applications.<preprocessing>.preprocess_input
    has_alpha: bool
    weight_files: Callable[[float], list[str]]  # alpha → no-top file names, largest input first

    def build(self):
        """The keras.applications constructor (imports Keras)."""
        import keras

        return getattr(keras.applications, self.constructor)

    def preprocess(self, x):
        import keras

        return getattr(keras.applications, self.preprocessing).preprocess_input(x)


FAMILIES: dict[str, Family] = {f.name: f for f in (
    Family("mobilenet_v2", "MobileNetV2", "mobilenet_v2", True, lambda a: [
        f"mobilenet_v2_weights_tf_dim_ordering_tf_kernels_{_alpha(a)}_{r}_no_top.h5"
        for r in (224, 192, 160, 128, 96)]),
    Family("mobilenet", "MobileNet", "mobilenet", True, lambda a: [
        f"mobilenet_{_alpha_v1(a)}_{r}_tf_no_top.h5" for r in (224, 192, 160, 128)]),
    Family("resnet50", "ResNet50", "resnet50", False,
           lambda a: ["resnet50_weights_tf_dim_ordering_tf_kernels_notop.h5"]),
    Family("efficientnet_b0", "EfficientNetB0", "efficientnet", False,
           lambda a: ["efficientnetb0_notop.h5"]),
)}

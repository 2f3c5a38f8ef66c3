"""Hardware choices made once per process: GPU memory growth, mixed precision, XLA.

On a GPU: mixed precision (bfloat16 on Ampere and newer, float16 with loss scaling before) with
float32 softmax heads, and XLA. On CPU: float32 and no XLA (XLA makes separable convs ~6x
slower there). Each choice can be forced; the result is logged with every trial.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class DeviceChoice:
    gpus: int
    precision: str  # float32 | mixed_bfloat16 | mixed_float16
    jit_compile: bool

    def as_params(self) -> dict:
        return {"device.gpus": self.gpus, "device.precision": self.precision,
                "device.jit_compile": self.jit_compile}


def choose(precision: str = "auto", xla: str = "auto") -> DeviceChoice:
    """Detect GPUs and set the Keras dtype policy; 'auto' picks per the module docstring."""
    import keras
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notes for each new trial model are expected
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    if precision == "auto":
        precision = "float32"
        if gpus:
            major = tf.config.experimental.get_device_details(gpus[0]).get(
                "compute_capability", (0, 0))[0]
            precision = "mixed_bfloat16" if major >= 8 else "mixed_float16"
    if precision not in ("float32", "mixed_bfloat16", "mixed_float16"):
        raise ValueError(f"precision must be auto, float32, mixed_bfloat16 or mixed_float16")
    keras.mixed_precision.set_global_policy(precision)
    jit = bool(gpus) if xla == "auto" else xla == "on"
    return DeviceChoice(gpus=len(gpus), precision=precision, jit_compile=jit)

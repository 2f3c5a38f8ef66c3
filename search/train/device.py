"""Hardware choices made once per process: GPU memory growth, mixed precision, XLA.

On a GPU: mixed precision (bfloat16 on compute capability >= 8, i.e. Ampere and newer; float16
before, where Keras 3 wraps the optimizer in a LossScaleOptimizer by itself at compile time
because the model's dtype policy is mixed_float16) with float32 softmax heads (search.model.heads),
and XLA (`jit_compile`, which `search.trial` passes to `compile`). On CPU: float32 and no XLA
(XLA makes separable convs ~6x slower there, and bfloat16 is emulated on most CPUs). Each
choice can be forced (`--precision`, `--xla`); the result is logged with every trial.

Memory growth lets several workers share one GPU instead of the first grabbing it all.
The input pipeline (search.data.table) keeps images uint8 and batches, casts and augments in a
parallel, prefetched tf.data map; bench/gpu.py measures whether that keeps a GPU busy.
"""

from __future__ import annotations

from dataclasses import dataclass

from search.errors import UsageError

PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")


@dataclass(frozen=True)
class DeviceChoice:
    gpus: int
    precision: str  # float32 | mixed_bfloat16 | mixed_float16
    jit_compile: bool
    name: str = "cpu"  # the first GPU's name and compute capability, or "cpu"

    def as_params(self) -> dict:
        return {"device.gpus": self.gpus, "device.precision": self.precision,
                "device.jit_compile": self.jit_compile, "device.name": self.name}


def auto_precision(compute_capability: tuple[int, int] | None) -> str:
    """float32 without a GPU; bfloat16 from Ampere (8.x) on, float16 (with loss scaling) before."""
    if compute_capability is None:
        return "float32"
    return "mixed_bfloat16" if compute_capability[0] >= 8 else "mixed_float16"


def choose(precision: str = "auto", xla: str = "auto") -> DeviceChoice:
    """Detect GPUs and set the Keras dtype policy; 'auto' picks per the module docstring."""
    import keras
    import tensorflow as tf

    if precision not in ("auto", *PRECISIONS):
        raise UsageError(f"precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if xla not in ("auto", "on", "off"):
        raise UsageError(f"xla must be auto, on or off; got {xla!r}")
    tf.get_logger().setLevel("ERROR")  # retracing notes for each new trial model are expected
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    capability, name = None, "cpu"
    if gpus:
        details = tf.config.experimental.get_device_details(gpus[0])
        capability = tuple(details.get("compute_capability", (0, 0)))
        name = f"{details.get('device_name', 'GPU')} (cc {capability[0]}.{capability[1]})"
    if precision == "auto":
        precision = auto_precision(capability)
    keras.mixed_precision.set_global_policy(precision)
    jit = bool(gpus) if xla == "auto" else xla == "on"
    return DeviceChoice(gpus=len(gpus), precision=precision, jit_compile=jit, name=name)

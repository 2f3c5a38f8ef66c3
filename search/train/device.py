"""Hardware choices made once per process: GPU memory growth, mixed precision, XLA, on any
Keras backend (TensorFlow, JAX, PyTorch; search.backend).

On a GPU: mixed precision (bfloat16 on compute capability >= 8, i.e. Ampere and newer; float16
before, where Keras 3 wraps the optimizer in a LossScaleOptimizer by itself at compile time
because the model's dtype policy is mixed_float16) with float32 softmax heads (search.model.heads),
and XLA (`jit_compile`, which `search.trial` passes to `compile`). On CPU: float32 and, on
TensorFlow, no XLA (XLA makes its separable convs ~6x slower there; bfloat16 is emulated on most
CPUs). Keras on JAX always compiles with XLA; on PyTorch jit_compile (torch.compile) is off
unless asked. Each choice can be forced (`--precision`, `--xla`); it is logged with every trial.

Memory growth lets several workers share one GPU instead of the first grabbing it all.
The input pipeline keeps images uint8 and batches, casts and augments them beside training: a
parallel, prefetched tf.data map on TensorFlow (search.data.table), a numpy PyDataset on the
others (search.data.arrays); bench/gpu.py measures whether that keeps a GPU busy.
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
    backend: str = "tensorflow"  # the Keras backend (search.backend)

    def as_params(self) -> dict:
        return {"device.gpus": self.gpus, "device.precision": self.precision,
                "device.jit_compile": self.jit_compile, "device.name": self.name,
                "device.backend": self.backend}


def auto_precision(compute_capability: tuple[int, int] | None) -> str:
    """float32 without a GPU; bfloat16 from Ampere (8.x) on, float16 (with loss scaling) before."""
    if compute_capability is None:
        return "float32"
    return "mixed_bfloat16" if compute_capability[0] >= 8 else "mixed_float16"


def choose(precision: str = "auto", xla: str = "auto") -> DeviceChoice:
    """Detect GPUs and set the Keras dtype policy; 'auto' picks per the module docstring."""
    import keras

    from search import backend

    if precision not in ("auto", *PRECISIONS):
        raise UsageError(f"precision must be auto, {', '.join(PRECISIONS)}; got {precision!r}")
    if xla not in ("auto", "on", "off"):
        raise UsageError(f"xla must be auto, on or off; got {xla!r}")
    found = {"tensorflow": _tensorflow_gpus, "jax": _jax_gpus, "torch": _torch_gpus}[
        backend.name()]()
    count, capability, name = found
    if precision == "auto":
        precision = auto_precision(capability)
    keras.mixed_precision.set_global_policy(precision)
    # Keras on JAX always compiles its steps with XLA (that is how JAX runs); jit_compile on
    # PyTorch is torch.compile, whose minutes of compiling a short trial does not earn back.
    default = {"tensorflow": bool(count), "jax": True, "torch": False}[backend.name()]
    jit = default if xla == "auto" else xla == "on"
    return DeviceChoice(gpus=count, precision=precision, jit_compile=jit, name=name,
                        backend=backend.name())


def _tensorflow_gpus() -> tuple[int, tuple[int, int] | None, str]:
    """(GPUs, the first one's compute capability, its name); memory growth on each."""
    import tensorflow as tf

    tf.get_logger().setLevel("ERROR")  # retracing notes for each new trial model are expected
    gpus = tf.config.list_physical_devices("GPU")
    for gpu in gpus:
        try:
            tf.config.experimental.set_memory_growth(gpu, True)
        except RuntimeError:  # already initialised in this process
            pass
    if not gpus:
        return 0, None, "cpu"
    details = tf.config.experimental.get_device_details(gpus[0])
    capability = tuple(details.get("compute_capability", (0, 0)))
    return len(gpus), capability, _name(details.get("device_name", "GPU"), capability)


def _jax_gpus() -> tuple[int, tuple[int, int] | None, str]:
    """Likewise on JAX (memory: search.backend sets XLA_PYTHON_CLIENT_PREALLOCATE=false)."""
    import jax

    try:
        gpus = jax.devices("gpu")
    except RuntimeError:  # no GPU platform in this jaxlib
        gpus = []
    if not gpus:
        return 0, None, "cpu"
    major, _, minor = str(getattr(gpus[0], "compute_capability", "0.0")).partition(".")
    capability = (int(major or 0), int(minor or 0))
    return len(gpus), capability, _name(gpus[0].device_kind, capability)


def _torch_gpus() -> tuple[int, tuple[int, int] | None, str]:
    import torch

    if not torch.cuda.is_available():
        return 0, None, "cpu"
    capability = tuple(torch.cuda.get_device_capability(0))
    return torch.cuda.device_count(), capability, _name(torch.cuda.get_device_name(0),
                                                         capability)


def _name(device: str, capability) -> str:
    return f"{device} (cc {capability[0]}.{capability[1]})"

"""Prepare what bench/gpu_session.sh needs on a lent GPU machine that has no package index.

The lent machines (/work/.library/device/KINDS.md: one H100 or H200, Python 3.12, PyTorch,
JAX with its CUDA plugin, CuPy, pandas, Pillow, h5py, ... but no TensorFlow, Keras, Optuna
or MLflow) reach nothing outside, and a call takes at most 64 MiB of files: the git working
tree plus up to 8 ignored paths named in `carry`. This script fills one ignored folder
(default runs/gpu-carry/, git-ignored as all of runs/) with:

  wheels/   Keras, Optuna, mlflow-skinny (not the full mlflow: its UI alone is ~30 MB),
            plotly (each finished trial writes its learning curves as a plotly page) and
            every dependency of theirs the machine lacks, for its Python (--python-version),
            never TensorFlow. Versions: the ones installed in the Python running this script
            (the project's .venv, where the tests pass) when they satisfy the requirement.
  weights/  the Keras ImageNet *_no_top.h5 files of ../shared/weights (SEARCH_WEIGHTS_DIR)
  hvc/      the first --images rows of ../shared/hvc/hvc_annotations.csv with their JPEGs
            (image_path relative to the CSV, as there)
  MANIFEST.txt  what is there, what the machine is assumed to have, and the sizes

and prints the total that would travel (tracked files + this folder), failing (exit 1) over
--limit-mib. Dependencies are found by reading each wheel's Requires-Dist (markers evaluated
for Linux x86-64 and --python-version); names the machine already has (DEVICE_HAS, from
KINDS.md's list) are not fetched, and bench/gpu_session.sh checks their versions there first.

    .venv/bin/python bench/gpu_carry.py                 # runs/gpu-carry for the device
    .venv/bin/python bench/gpu_carry.py --python-version 3.11 --out runs/gpu-carry-cp311
                                                        # the same for a local dry run here

Run it again: files already there are kept (wheels by name). The device-tool call that uses
the folder is in bench/README.md (bash bench/gpu_session.sh).
"""

from __future__ import annotations

import argparse
import email.parser
import os
import shutil
import subprocess
import sys
import zipfile
from importlib import metadata
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name, parse_wheel_filename

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared"
# What gpu_session.sh installs and imports. plotly: search.track.artifacts writes each finished
# trial's curves with it. keras-tuner, optuna-dashboard and the full mlflow (its server and UI)
# are not needed by `search run / best / predict` on the Optuna engine.
ROOTS = ("keras", "optuna", "mlflow-skinny", "plotly")
NEVER = {"tensorflow", "tensorflow-cpu", "tensorflow-gpu", "tensorflow-intel", "tf-keras",
         "tensorflow-io-gcs-filesystem", "mlflow"}
# The Python packages of the lent machines' image ('cuda'), from KINDS.md ("Python packages
# already there", read on a machine on 2026-11-17). Not fetched; their versions are checked
# there by gpu_session.sh's first step (pip check-like, against the carried wheels' needs).
DEVICE_HAS = set(map(canonicalize_name, """
absl-py accelerate aiofiles aiohappyeyeballs aiohttp aiosignal annotated-doc anyio attrs botorch
build certifi charset-normalizer chex click cloudpickle cmake colorama contourpy coverage
cuda-bindings cuda-core cuda-pathfinder cuda-toolkit cupy-cuda13x cycler cython diffrax e3nn
einops equinox etils execnet filelock flatbuffers flax fonttools formulaic frozenlist fsspec
gpytorch grpcio h11 h5py hf-xet httpcore httpx huggingface-hub humanize hypothesis idna imageio
iniconfig interface-meta jax jax-cuda13-pjrt jax-cuda13-plugin jaxlib jaxtyping jinja2 joblib
kiwisolver lazy-loader lightning lightning-utilities linear-operator lineax llvmlite lxml
markdown markdown-it-py markupsafe matplotlib mdurl meson ml-dtypes mpi4py mpmath msgpack
multidict multipledispatch mypy-extensions nanobind narwhals networkx ninja numba numba-cuda
numpy numpyro nvidia-cublas nvidia-cuda-cupti nvidia-cuda-nvrtc nvidia-cuda-runtime
nvidia-cudnn-cu13 nvidia-cufft nvidia-cufile nvidia-curand nvidia-cusolver nvidia-cusparse
nvidia-cusparselt-cu13 nvidia-ml-py nvidia-nccl-cu13 nvidia-nvjitlink nvidia-nvshmem-cu13
nvidia-nvtx onnx onnx-ir onnxruntime onnxscript opencv-python-headless optax opt-einsum
opt-einsum-fx optimistix orbax-checkpoint packaging pandas pathspec patsy peft pillow pip pluggy
portalocker prometheus-client propcache protobuf psutil pyarrow pybind11 py-cpuinfo pygments
pyparsing pyproject-hooks pyre-extensions pytest pytest-benchmark pytest-cov pytest-mock
pytest-timeout pytest-xdist python-dateutil pytorch-lightning pyyaml regex requests rich
sacrebleu safetensors scikit-build-core scikit-image scikit-learn scipy seaborn sentencepiece
sentence-transformers setuptools shellingham simplejson six sortedcontainers statsmodels sympy
tabulate tensorboard tensorboard-data-server tensorstore threadpoolctl tifffile tiktoken timm
tokenizers toolz torch torchaudio torchdiffeq torch-geometric torchmetrics torchvision tqdm
transformers treescope triton typer typing-extensions typing-inspect urllib3 uvloop
wadler-lindig werkzeug wheel wrapt xarray xxhash yarl zipp
""".split()))
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "manylinux_2_24_x86_64",
             "manylinux_2_31_x86_64", "manylinux_2_34_x86_64", "manylinux_2_35_x86_64")
MIB = 2**20


def environment(python_version: str) -> dict:
    """PEP 508 marker values of the target: Linux x86-64, CPython `python_version`."""
    env = default_environment()
    env.update(python_version=python_version, python_full_version=f"{python_version}.0",
               sys_platform="linux", platform_system="Linux", platform_machine="x86_64",
               os_name="posix", implementation_name="cpython",
               platform_python_implementation="CPython")
    return env


def wheel_name(path: Path) -> str:
    return canonicalize_name(parse_wheel_filename(path.name)[0])


def requires(wheel: Path, env: dict) -> list[Requirement]:
    """The wheel's Requires-Dist that apply on the target (no extras)."""
    with zipfile.ZipFile(wheel) as z:
        meta = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        msg = email.parser.Parser().parsestr(z.read(meta).decode())
    out = []
    for line in msg.get_all("Requires-Dist") or []:
        req = Requirement(line)
        if req.marker is None or req.marker.evaluate({**env, "extra": ""}):
            out.append(req)
    return out


def pin(req: Requirement) -> str:
    """`name==V` with V the version installed here when it satisfies req, else req as is."""
    try:
        here = metadata.version(req.name)
    except metadata.PackageNotFoundError:
        here = None
    if here is not None and req.specifier.contains(here, prereleases=True):
        return f"{req.name}=={here}"
    return f"{req.name}{req.specifier}"


def download(spec: str, folder: Path, python_version: str) -> Path:
    before = set(folder.glob("*.whl"))
    cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", "--only-binary=:all:",
           "--python-version", python_version, "--implementation", "cp",
           *(a for p in PLATFORMS for a in ("--platform", p)), "-d", str(folder), spec]
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.exit(f"gpu_carry: pip download {spec} failed:\n{done.stderr.strip()[-2000:]}")
    new = set(folder.glob("*.whl")) - before
    name = canonicalize_name(Requirement(spec).name)
    found = [w for w in (new or folder.glob("*.whl")) if wheel_name(w) == name]
    if not found:
        sys.exit(f"gpu_carry: pip download {spec} left no wheel of {name} in {folder}")
    return found[0]


def wheels(folder: Path, python_version: str) -> tuple[list[Path], dict[str, set[str]]]:
    """Fetch ROOTS and what they need that the device lacks; (wheels, assumed-present needs)."""
    folder.mkdir(parents=True, exist_ok=True)
    env = environment(python_version)
    have = {wheel_name(w): w for w in folder.glob("*.whl")}
    kept: dict[str, Path] = {}
    assumed: dict[str, set[str]] = {}
    queue = [Requirement(pin(Requirement(r))) for r in ROOTS]
    while queue:
        req = queue.pop(0)
        name = canonicalize_name(req.name)
        if name in NEVER:
            sys.exit(f"gpu_carry: {name} is required by the carried set; it must not travel")
        if name in DEVICE_HAS:
            assumed.setdefault(name, set()).add(str(req.specifier) or "any")
            continue
        if name in kept:
            version = parse_wheel_filename(kept[name].name)[1]
            if not req.specifier.contains(version, prereleases=True):
                sys.exit(f"gpu_carry: {kept[name].name} does not satisfy {req}")
            continue
        wheel = have.get(name)
        if wheel is not None and not req.specifier.contains(
                parse_wheel_filename(wheel.name)[1], prereleases=True):
            wheel.unlink()
            wheel = None
        if wheel is None:
            spec = pin(req)
            print(f"  pip download {spec}", flush=True)
            wheel = download(spec, folder, python_version)
        kept[name] = wheel
        queue += requires(wheel, env)
    for name, wheel in have.items():  # left from an earlier run, no longer needed
        if name not in kept and wheel.exists():
            wheel.unlink()
    return sorted(kept.values()), assumed


def weights(folder: Path) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    source = SHARED / "weights"
    files = sorted(source.glob("*_no_top.h5"))
    if not files:
        sys.exit(f"gpu_carry: no *_no_top.h5 files in {source}")
    out = []
    for f in files:
        target = folder / f.name
        if not target.exists() or target.stat().st_size != f.stat().st_size:
            shutil.copyfile(f, target)
        out.append(target)
    return out


def images(folder: Path, count: int) -> tuple[Path, int]:
    """The first `count` rows of the real annotations and their images, paths as there."""
    import pandas as pd

    csv = SHARED / "hvc" / "hvc_annotations.csv"
    if not csv.is_file():
        sys.exit(f"gpu_carry: {csv} not found")
    frame = pd.read_csv(csv, keep_default_na=False).head(count)
    folder.mkdir(parents=True, exist_ok=True)
    for rel in frame["image_path"]:
        source, target = csv.parent / rel, folder / rel
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, target)
    out = folder / "hvc_annotations.csv"
    frame.to_csv(out, index=False)
    return out, len(frame)


def size(paths) -> int:
    return sum(p.stat().st_size for p in paths if p.is_file())


def tree_bytes() -> int:
    """Bytes of the files git tracks and of the untracked ones it does not ignore (what a
    device call sends besides `carry`)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others",
                             "--exclude-standard"], cwd=ROOT, capture_output=True, check=True)
    return size(ROOT / p for p in listed.stdout.decode().split("\0") if p)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "runs" / "gpu-carry")
    p.add_argument("--python-version", default="3.12", help="the device's Python (KINDS.md)")
    p.add_argument("--images", type=int, default=1500, help="rows of the real data to carry")
    p.add_argument("--limit-mib", type=float, default=60.0,
                   help="fail above this many MiB (tracked tree + this folder); the call's "
                        "limit is 64")
    args = p.parse_args(argv)
    out = args.out.resolve()
    ignored = subprocess.run(["git", "check-ignore", "-q", str(out / "x")], cwd=ROOT)
    if ignored.returncode:
        sys.exit(f"gpu_carry: {out} is not git-ignored; choose a folder under runs/ (or add it "
                 f"to .git/info/exclude) so that wheels and images are never committed")
    print(f"wheels for CPython {args.python_version}, manylinux x86-64 -> {out / 'wheels'}")
    whls, assumed = wheels(out / "wheels", args.python_version)
    h5 = weights(out / "weights")
    csv, rows = images(out / "hvc", args.images)
    jpgs = [p for p in (out / "hvc").rglob("*") if p.is_file() and p != csv]
    tree = tree_bytes()
    parts = {"wheels": size(whls), "weights": size(h5), "images": size(jpgs) + size([csv])}
    carry = sum(parts.values())
    total = carry + tree
    lines = [f"# {out.name}: made by bench/gpu_carry.py for CPython {args.python_version}",
             "", f"wheels ({len(whls)}, {parts['wheels'] / MIB:.1f} MiB):"]
    lines += [f"  {w.name}  {w.stat().st_size / MIB:.2f} MiB" for w in whls]
    lines += ["", "needed and assumed present on the device (KINDS.md):"]
    lines += [f"  {n} {' '.join(sorted(s))}" for n, s in sorted(assumed.items())]
    lines += ["", f"weights ({parts['weights'] / MIB:.1f} MiB): " + ", ".join(
        h.name for h in h5),
              f"images: {rows} rows, {len(jpgs)} files, {parts['images'] / MIB:.1f} MiB "
              f"({csv.relative_to(out)})",
              f"this folder: {carry / MIB:.1f} MiB; git tree (tracked + untracked, not "
              f"ignored): {tree / MIB:.1f} MiB; a device call carries {total / MIB:.1f} MiB "
              f"(limit 64)"]
    (out / "MANIFEST.txt").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    if total > args.limit_mib * MIB:
        print(f"gpu_carry: {total / MIB:.1f} MiB is over --limit-mib {args.limit_mib:g}: carry "
              f"fewer --images", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    os.chdir(ROOT)
    raise SystemExit(main())

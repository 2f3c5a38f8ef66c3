"""Batch prediction throughput: `search predict`'s path (search.serve.batch_predict: read a batch,
predict it with registry.predict_probs, write CSV rows) against calling Keras directly on the
same files in the same run (PIL decode, np.stack, `model.predict` per batch, nothing written).
The ratio is what the wrapper costs; target (issue 20): <= 1.10x the direct time.

Model: the served shape of a real champion, MobileNetV2 alpha 0.35 at 224x128 with the crop
and normalisation inside (ImageNet weights from ../shared/weights when present; the weights do
not change the cost). Images: the real 224x224 JPEGs in ../shared/hvc when present, else
synthetic PNGs.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import tempfile
import time
from pathlib import Path

from benchlib import HVC_CSV, ROOT, record

WEIGHTS = ROOT.parent / "shared" / "weights"


def images(limit: int, tmp: Path) -> tuple[list[str], str]:
    if HVC_CSV.is_file():
        import pandas as pd

        frame = pd.read_csv(HVC_CSV, keep_default_na=False).head(limit)
        return [str(HVC_CSV.parent / p) for p in frame["image_path"]], \
            f"{limit} real hvc JPEGs (224x224)"
    from search.data import synthetic

    csv = synthetic.generate(tmp / "synthetic", n=limit, size=96)
    import pandas as pd

    frame = pd.read_csv(csv, keep_default_na=False)
    return [str(csv.parent / p) for p in frame["image_path"]], f"{limit} synthetic 96 px PNGs"


def model(tmp: Path):
    from search.model import assembly as model_lib
    from search.space.config import TrialConfig
    from search.track import registry

    if WEIGHTS.is_dir():
        os.environ.setdefault("SEARCH_WEIGHTS_DIR", str(WEIGHTS))
    vocab = {"gender": ("female", "male"), "age": ("15-25", "25-35", "35-45", "45-55", "55+"),
             "emotion": ("Angry/Serious", "Happy", "Neutral", "Sad")}
    config = TrialConfig(backbone="pretrained", family="mobilenet_v2", alpha=0.35,
                         weights="auto" if WEIGHTS.is_dir() else None, image_size=(224, 128),
                         crop="auto", neck_units=64, head_units=0)
    folder = tmp / "model"
    folder.mkdir()
    model_lib.export(model_lib.build(config, vocab), config).save(folder / registry.MODEL_FILE)
    (folder / registry.LABELS_FILE).write_text(json.dumps({h: list(v) for h, v in vocab.items()}))
    return registry.load(str(folder))


def direct(net, paths: list[str], batch_size: int) -> float:
    import numpy as np
    from PIL import Image

    start = time.perf_counter()
    for i in range(0, len(paths), batch_size):
        batch = np.stack([np.asarray(Image.open(p).convert("RGB"), np.float32)
                          for p in paths[i:i + batch_size]])
        net.predict(batch, verbose=0)
    return time.perf_counter() - start


def wrapped(net, vocab, paths: list[str], batch_size: int) -> float:
    from search.serve import batch_predict

    start = time.perf_counter()
    summary = batch_predict.predict(net, vocab, paths, io.StringIO(), "csv", batch_size)
    assert summary.failed == 0
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=640)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--no-record", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        paths, what = images(args.images, Path(tmp))
        net, vocab = model(Path(tmp))
        direct(net, paths[:args.batch_size], args.batch_size)  # trace and warm both paths
        wrapped(net, vocab, paths[:args.batch_size], args.batch_size)
        times = {"direct": [], "wrapped": []}
        for _ in range(args.repeats):  # interleaved: load on the machine hits both alike
            times["direct"].append(direct(net, paths, args.batch_size))
            times["wrapped"].append(wrapped(net, vocab, paths, args.batch_size))
    best = {k: min(v) for k, v in times.items()}
    ratio = best["wrapped"] / best["direct"]
    lines = [f"{what}; MobileNetV2 0.35 at 224x128 with crop: auto, 3 heads; batch "
             f"{args.batch_size}; best of {args.repeats} interleaved repeats.", "",
             "| path | seconds | images/s |", "|---|---|---|",
             f"| Keras directly (PIL decode, np.stack, model.predict) | {best['direct']:.2f} | "
             f"{len(paths) / best['direct']:.0f} |",
             f"| search predict (search.serve.batch_predict, CSV rows) | {best['wrapped']:.2f} | "
             f"{len(paths) / best['wrapped']:.0f} |", "",
             f"Wrapper / direct: {ratio:.3f}x (target <= 1.10x: "
             f"{'met' if ratio <= 1.10 else f'missed by {ratio - 1.10:.3f}'})."]
    record("predict: search predict vs Keras directly", lines, enabled=not args.no_record)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

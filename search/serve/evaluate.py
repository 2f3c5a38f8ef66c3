"""`search evaluate`: score a saved model on a labelled CSV (hold-out data), per head.

Uses the model's own label vocabulary (a label it does not know is a data error, not a
silent miss), feeds raw images through the saved model exactly as `predict` does, and
reports accuracy, balanced accuracy and the majority baseline with 95% bootstrap confidence
intervals (percentile method, rows resampled with a fixed seed).
"""

from __future__ import annotations

import json
from pathlib import Path

from search.settings import Settings
from search.train import metrics


def evaluate(settings: Settings, model: str, csv: str, *, rounds: int = 1000,
             json_out: str | None = None, on_bad_images: str = "error") -> int:
    from search.data.table import decode, read_table
    from search.track import registry
    from search.track.tracking import using

    with using(settings.tracking_uri):
        net, vocab = registry.load(model)
    table = read_table(csv, tuple(vocab), vocab=vocab, on_bad_images=on_bad_images)
    probs = registry.predict_probs(net, [decode(p) for p in table.paths])
    scores = metrics.scores_with_ci(table.labels(), probs, rounds=rounds)
    print(f"{model} on {csv} ({len(table)} images); 95% bootstrap intervals, {rounds} rounds")
    print(f"  {'head':<14}{'accuracy':>22}{'balanced':>22}{'majority':>10}")
    for head, s in scores.items():
        acc = f"{s['accuracy']:.3f} [{s['accuracy_ci'][0]:.3f}, {s['accuracy_ci'][1]:.3f}]"
        bal = (f"{s['balanced_accuracy']:.3f} [{s['balanced_accuracy_ci'][0]:.3f}, "
               f"{s['balanced_accuracy_ci'][1]:.3f}]")
        print(f"  {head:<14}{acc:>22}{bal:>22}{s['majority']:>10.3f}")
    if json_out:
        Path(json_out).write_text(json.dumps({"model": model, "data": str(csv),
                                              "heads": scores}, indent=2))
        print(f"wrote {json_out}")
    return 0

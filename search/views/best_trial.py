"""The report's sections about the best trial, read from its MLflow run (config.json,
confusion.json, lr_find.html, its metrics): its learning-rate schedule and LR range test
curve, and its confusion matrices. Whatever cannot be read becomes a note in its section.
TensorFlow is imported only to draw the schedule (`search.train.clr`).
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from search.errors import ConfigError
from search.settings import Settings, mask
from search.space.config import TrialConfig
from search.study.trial_record import TrialRecord
from search.views import figures
from search.views.page import Section


@dataclass
class RunFiles:
    """What the report reads from the best trial's MLflow run; `problem` says why not."""

    config: dict | None = None
    confusion: dict | None = None
    lr_find_html: str | None = None
    metrics: dict = field(default_factory=dict)
    problem: str | None = None


def run_files(settings: Settings, run_id: str | None) -> RunFiles:
    """config.json, confusion.json, lr_find.html and the metrics of one MLflow run."""
    if not run_id:
        return RunFiles(problem="the best trial has no MLflow run")
    local = settings.tracking_uri.removeprefix("sqlite:///")
    if settings.tracking_uri.startswith("sqlite:///") and not Path(local).is_file():
        return RunFiles(problem=f"no MLflow store at {local} (pass --tracking-uri)")
    from mlflow import MlflowClient

    try:
        client = MlflowClient(tracking_uri=settings.tracking_uri)
        names = {a.path for a in client.list_artifacts(run_id)}
        texts = {}
        with tempfile.TemporaryDirectory() as tmp:
            for name in ("config.json", "confusion.json", "lr_find.html"):
                if name in names:
                    texts[name] = Path(client.download_artifacts(run_id, name, tmp)).read_text()
        return RunFiles(config=_json(texts.get("config.json")),
                        confusion=_json(texts.get("confusion.json")),
                        lr_find_html=texts.get("lr_find.html"),
                        metrics=client.get_run(run_id).data.metrics)
    except Exception as exc:  # server down, run deleted, no permission: show it, go on
        return RunFiles(problem=mask(f"cannot read MLflow run {run_id}: {exc}"))


def _json(text: str | None):
    return None if text is None else json.loads(text)


def schedule(best: TrialRecord, run: RunFiles) -> Section:
    title = f"Learning rate of the best trial (#{best.number})"
    try:
        config = TrialConfig.from_dict(run.config) if run.config is not None else None
    except ConfigError as exc:  # written by another version of search
        run.problem = f"its config.json does not read: {exc}"
        config = None
    if config is None:
        return Section("lr-schedule", title, [figures.note(
            run.problem or "the best trial's MLflow run has no config.json")])
    from search.train import clr  # TensorFlow: only here
    from search.views.lr_curve import schedule_figure

    spe, known = steps_per_epoch(config, run.metrics)
    step_size = clr.steps_from_epochs(config.step_size_epochs, spe)
    trained = config.epochs * spe
    fig = schedule_figure(config.base_lr, config.max_lr, step_size, config.clr_mode,
                          config.gamma, total_steps=max(trained, 2 * step_size))
    fig.add_vline(x=trained, line_dash="dot",
                  annotation_text=f"end of training ({config.epochs} epoch(s))")
    fig.update_layout(height=400)
    text = (f"{config.clr_mode} from {config.base_lr:.2e} to {config.max_lr:.2e}, half cycle "
            f"{config.step_size_epochs:g} epoch(s) = {step_size} step(s)"
            f"{'' if known else ' (steps per epoch not logged: 100 assumed)'}. ")
    if best.lr_range_test:
        text += "The bounds came from an LR range test. "
    figs = [fig]
    if not run.lr_find_html:
        text += "No LR range test curve was logged (trials run one with clr_bounds: lr_find)."
    else:
        try:
            figs.append(figures.from_html(run.lr_find_html))
            text += "Below: the LR range test curve."
        except (ValueError, IndexError) as exc:
            text += f"Its LR range test curve (lr_find.html) could not be read: {exc}."
    return Section("lr-schedule", title, figs, text)


def steps_per_epoch(config: TrialConfig, metrics: dict) -> tuple[int, bool]:
    """Optimizer steps per epoch as the trial trained: logged by the trial, or else its
    training images (images/s × seconds ÷ epochs) over the batch size; (100, False) if unknown."""
    if metrics.get("steps_per_epoch"):
        return int(metrics["steps_per_epoch"]), True
    ips, seconds = metrics.get("train_images_per_second"), metrics.get("train_seconds")
    if not ips or not seconds:
        return 100, False
    images = round(ips * seconds / config.epochs)
    return max(1, images // config.batch_size), True


def confusions(best: TrialRecord, run: RunFiles, heads: list[str]) -> Section:
    title = f"Confusion matrices of the best trial (#{best.number})"
    data = run.confusion
    if data is None:
        return Section("confusion", title, [figures.note(
            run.problem or "the best trial's MLflow run has no confusion.json")])
    accuracy = best.accuracy
    shown = [h for h in heads if h in data["confusion"]]
    return Section("confusion", title, [
        figures.confusion(h, data["labels"][h], data["confusion"][h], accuracy.get(h))
        for h in shown], "Validation images; rows are the true class, colour is the share of "
                         "the row, the number is the image count.")

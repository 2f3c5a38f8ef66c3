"""The model card of a registered version: what made it, read from the MLflow run that logged it
and written onto the version (description in Markdown, which the MLflow UI shows on the
version page, and tags for search and filtering).

Every way a model is registered (`search best`, `--refit`, `--ensemble`, `search train
--register`) goes through `registry.register`, which calls `write`: one home, and a card is
built from what the run recorded, never from what the caller believes. A figure the run does
not hold is left out rather than guessed.
"""

from __future__ import annotations

import json
import re

from search.track.tags import (
    FINAL_ROLE,
    KIND_TAG,
    MEMBERS_TAG,
    RETRAINED_FROM_TAG,
    ROLE_TAG,
    STUDY_TAG,
    TRIAL_TAG,
)

ROWS = ("train", "validation", "test")
# MLflow's SQL stores hold a version description of up to 5,000 characters, a tag value 5,000.
MAX_DESCRIPTION, MAX_TAG = 5000, 5000


def rows_params(session) -> dict[str, int]:
    """What a run logs so its card can say how many rows trained, validated and tested it."""
    return {"rows.train": len(session.train_rows), "rows.validation": len(session.val_rows),
            "rows.test": len(session.test_rows)}


def write(client, name: str, version: str, run_id: str | None, model_uri: str) -> None:
    """Describe and tag `name` version `version` from run `run_id` (nothing without a run)."""
    if not run_id:
        return
    run = client.get_run(run_id)
    description, tags = card(run, name, _config(client, model_uri))
    client.update_model_version(name, version, description=description)
    for key, value in tags.items():
        client.set_model_version_tag(name, version, key, value)


def _config(client, model_uri: str) -> dict | None:
    """The config.json logged with the model (a trial's config, or a final model's recipe).
    A `models:/m-ID` URI with a sub-path would be read as a registered model's name, so the
    file is read from the logged model's artifact location."""
    import mlflow

    try:
        location = client.get_logged_model(model_uri.rstrip("/").split("/")[-1]).artifact_location
        return json.loads(mlflow.artifacts.load_text(f"{location}/artifacts/config.json"))
    except Exception:  # an older model, or one logged by hand: the card goes without
        return None


def card(run, name: str, config: dict | None) -> tuple[str, dict[str, str]]:
    """(Markdown description, tags) of the model logged by `run` (an mlflow Run)."""
    tags = run.data.tags
    params, metrics = run.data.params, run.data.metrics
    study = tags.get(STUDY_TAG, "")
    final = tags.get(ROLE_TAG) == FINAL_ROLE
    kind = tags.get(KIND_TAG, "trial")
    heads = _heads(metrics)
    out = {STUDY_TAG: study, "search.kind": kind, "search.run_id": run.info.run_id}
    lines = [f"# {name}", ""]
    made = (f"the {kind} of study `{study}`" if final else
            f"trial #{tags.get(TRIAL_TAG, '?')} of study `{study}`")
    if RETRAINED_FROM_TAG in tags:
        made = f"a retrain of trial {tags[RETRAINED_FROM_TAG]}"
    lines.append(f"Made by {made}; MLflow run `{run.info.run_id}`.")
    if not final:
        out[TRIAL_TAG] = tags.get(TRIAL_TAG, "")
    data = _dataset(run)
    if data:
        out.update({"data.name": data["name"], "data.digest": data["digest"]})
        lines.append(f"Data: `{data['name']}` (digest `{data['digest']}`, source "
                     f"`{data['source']}`).")
    rows = {part: params.get(f"rows.{part}") for part in ROWS}
    if any(rows.values()):
        out.update({f"rows.{part}": n for part, n in rows.items() if n is not None})
        trained = (" (a refit: its train rows include the validation rows)"
                   if kind == "refit" else "")
        lines.append("Rows: " + ", ".join(f"{n} {part}" for part, n in rows.items()
                                          if n is not None) + trained + ".")
    if "flips" in params:  # a selection: test-time flips decided per head
        out["search.flips"] = params["flips"]
        lines.append(f"Test-time flips (each member averages the image and its mirror) on: "
                     f"{params['flips'].replace(',', ', ')}.")
    lines += ["", *_table(heads, metrics, "val" if final else "final", kind == "refit")]
    for part, prefix in (("validation", "val" if final else "final"), ("test", "test")):
        mean = _mean(metrics, prefix, heads)
        if mean is not None:
            out[f"{part}_mean_accuracy"] = f"{mean:.4f}"
    out["search.command"] = command(tags, name, kind, study)
    lines += ["", "Reproduce it (same storage and tracking flags as the search):", "",
              f"    {out['search.command']}"]
    text = "\n".join(lines)
    if config is not None:
        block = json.dumps(config, indent=1, sort_keys=True)
        room = MAX_DESCRIPTION - len(text) - 60
        if len(block) > room:
            block = block[:max(room, 0)] + "\n... (cut: the model's config.json has it all)"
        text += "\n\nConfig:\n\n```json\n" + block + "\n```"
    return text[:MAX_DESCRIPTION], {k: str(v)[:MAX_TAG] for k, v in out.items()}


def command(tags: dict, name: str, kind: str, study: str) -> str:
    """The `search` command that builds this model again."""
    if kind == "refit":
        return f"search best --study {study} --register {name} --refit"
    if kind in ("ensemble", "per-head"):
        members = len(tags.get(MEMBERS_TAG, "").split(","))
        return f"search best --study {study} --register {name} --ensemble {members}"
    if kind == "selection":  # any --ensemble K builds the same selection
        return f"search best --study {study} --register {name} --ensemble 2"
    source = tags.get(RETRAINED_FROM_TAG) or f"{study}:{tags.get(TRIAL_TAG, '?')}"
    return f"search train --from-trial {source} --register {name}"


def _heads(metrics: dict) -> list[str]:
    """The heads a run scored: each has a majority baseline on validation or test rows."""
    pattern = re.compile(r"^(?:final|val|test)_(.+)_majority$")
    return sorted({m.group(1) for key in metrics if (m := pattern.match(key))} - {"mean"})


def _table(heads: list[str], metrics: dict, val: str, trained_on_val: bool) -> list[str]:
    test = any(f"test_{h}_accuracy" in metrics for h in heads)
    header = "| head | validation accuracy | majority |" + (" test accuracy | majority |"
                                                           if test else "")
    lines = [header, "|---|---|---|" + ("---|---|" if test else "")]
    for h in heads:
        acc = metrics.get(f"{val}_{h}_accuracy")
        cells = ["trained on" if trained_on_val or acc is None else f"{acc:.4f}",
                 _cell(metrics.get(f"{val}_{h}_majority"))]
        if test:
            cells += [_cell(metrics.get(f"test_{h}_accuracy")),
                      _cell(metrics.get(f"test_{h}_majority"))]
        lines.append(f"| {h} | " + " | ".join(cells) + " |")
    return lines


def _cell(value) -> str:
    return "" if value is None else f"{value:.4f}"


def _mean(metrics: dict, prefix: str, heads: list[str]) -> float | None:
    values = [metrics.get(f"{prefix}_{h}_accuracy") for h in heads]
    if not heads or any(v is None for v in values):
        return None
    return sum(values) / len(values)


def _dataset(run) -> dict | None:
    inputs = getattr(run, "inputs", None)
    for item in (inputs.dataset_inputs if inputs else []):
        d = item.dataset
        try:
            source = json.loads(d.source).get("uri", d.source)
        except (ValueError, AttributeError):
            source = d.source
        return {"name": d.name, "digest": d.digest, "source": source}
    return None

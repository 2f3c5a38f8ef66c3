"""A final-model candidate's MLflow run: found and reused when the same candidate (its tags) was
built before, else logged in a run of its own under the study's parent run, its model saved
the way a trial's is, with its scores, rows and data. No TensorFlow here: the model is built
by the caller's `model()` only when a run is logged."""

from __future__ import annotations

import tempfile
from pathlib import Path

from search.final.champion import Candidate
from search.final.champion import mean_accuracy as _mean
from search.track.tags import FINAL_ROLE, MODEL_URI_TAG, ROLE_TAG, STUDY_TAG


def built(session, tags: dict) -> tuple[str, str] | None:
    """(run id, model URI) of a candidate already built with these tags, if any."""
    tracker = session.tracking.tracker
    wanted = {ROLE_TAG: FINAL_ROLE, STUDY_TAG: session.study, **tags}
    matches = " and ".join(f"tags.`{k}` = '{v}'" for k, v in wanted.items())
    for run in tracker.client.search_runs([tracker.experiment_id],
                                          f"{matches} and attributes.status = 'FINISHED'",
                                          max_results=5, order_by=["attributes.start_time DESC"]):
        uri = run.data.tags.get(MODEL_URI_TAG)
        if uri:
            return run.info.run_id, uri
    return None


def log(session, candidate: Candidate, tags: dict, model, vocab: dict, config: dict,
        params: dict, *, metrics: dict | None = None) -> None:
    """Log the candidate's model (built by `model()`) in its own MLflow run under the study's
    parent run, with its scores, rows and data; or reuse the run of the same candidate built
    before."""
    from search.track import model_card

    found = built(session, tags)
    if found:
        candidate.run_id, candidate.model_uri = found
        candidate.reused = True
        return
    tracking = session.tracking
    with tracking.tracker.nested_run(tracking.parent_run_id, session.study, candidate.name,
                                     {ROLE_TAG: FINAL_ROLE, **tags}) as run:
        run.log_params({**params, **model_card.rows_params(session)})
        run.log_data(session.table, session.csv)
        run.log_metrics({**(metrics or {}), **_score_metrics(candidate)})
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "model.keras"
            model().save(path)
            candidate.model_uri = run.log_model(path, vocab, config)
        run.set_tags({MODEL_URI_TAG: candidate.model_uri})
    candidate.run_id = run.run_id


def _score_metrics(candidate: Candidate) -> dict:
    out = {}
    for part, scores in (("val", candidate.val), ("test", candidate.test)):
        for head, s in (scores or {}).items():
            out[f"{part}_{head}_accuracy"] = s["accuracy"]
            out[f"{part}_{head}_balanced_accuracy"] = s["balanced_accuracy"]
            out[f"{part}_{head}_majority"] = s["majority"]
        if scores:
            out[f"{part}_mean_accuracy"] = _mean(scores)
    return out


def where(candidate: Candidate) -> str:
    if not candidate.run_id:
        return ""
    return (f"; {'reused ' if candidate.reused else ''}MLflow run {candidate.run_id[:8]}, "
            f"{candidate.model_uri}")

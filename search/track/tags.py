"""The MLflow tags `search` puts on its runs, by name: the MLflow half of a trial's record (the
Optuna half is `search.study.trial_record`). Whoever writes or reads a tag that another module
also reads uses these names; a tag only its writer knows stays beside that writer."""

STUDY_TAG = "search.study"  # the study a run belongs to (parent, trial and final runs)
ROLE_TAG = "search.role"  # TRIAL_ROLE | FINAL_ROLE (the parent run has none)
TRIAL_TAG = "search.trial"  # the Optuna trial number of a trial run
STATE_TAG = "search.state"  # COMPLETE | PRUNED | FAILED, as the trial ended
REASON_TAG = "search.reason"  # why a trial failed or was pruned, one line
MODEL_URI_TAG = "search.model_uri"  # the run's logged model
MODEL_DELETED_TAG = "search.model_deleted"  # the trial's model was not among those kept
BASELINE_TAG = "search.baseline"  # the enqueued baseline a trial ran, by name
WARM_START_TAG = "search.warm_start"  # STUDY#N: the earlier trial a --warm-start trial repeats
RETRAINED_FROM_TAG = "search.retrained_from"  # STUDY:NUMBER of a `search train --from-trial`
KIND_TAG = "search.final"  # a final-model candidate's kind: refit | ensemble | per-head
MEMBERS_TAG = "search.members"  # what a candidate is made of: the key for reusing it

STUDY_ROLE = "study"  # the parent run of a study
TRIAL_ROLE = "trial"
FINAL_ROLE = "final"

"""After the search: which trial is best and pulling it (`results`), the final-model candidates
(refit, ensemble, per-head) and their MLflow runs (`candidates`, `runs`), the rule that picks
the champion (`champion`), and one trial trained again (`retrain`)."""

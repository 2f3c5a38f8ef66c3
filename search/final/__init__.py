"""After the search: which trial is best and pulling it (`results`), the final-model candidates
(refit, ensemble, per-head) and their MLflow runs (`candidates`, `runs`), per-head ensemble
selection over the kept trials with its test-time flips (`selection`) and the `selection`
candidate built from it (`selected`), the rule that picks the champion (`champion`), and one
trial trained again (`retrain`)."""

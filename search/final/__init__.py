"""After the search: which trial is best and pulling it (`results`), the final-model candidates
(refit, ensemble, per-head, selection) and their MLflow runs (`candidates`, `runs`), per-head
ensemble selection over every finished trial with its test-time flips (`selection`), the rule
that picks the champion (`champion`), and one trial trained again (`retrain`)."""

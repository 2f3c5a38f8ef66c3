"""A study and the processes that run it: what the user asked for (`options`, every default
in one place), what one search is about, built once (`session`), the Optuna study and storage
built from the space's sampler and pruner (`study`, `storage`), the heads pruning rule
(`pruning`), the record each trial leaves (`trial_record`), workers as processes or Ray tasks
(`workers`, `ray_workers`, `ray_cluster`, `heartbeats`), when a search has converged
(`convergence`), and the views of a storage's results (`catalog`: `search studies`;
`pareto`)."""

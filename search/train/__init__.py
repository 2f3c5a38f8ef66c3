"""One config fitted: its stages and compiled models (`training`), the callbacks and cyclical
learning rates it fits with (`callbacks`, `clr`), the stage-aligned step of each epoch that
pruners read (`steps`), frozen features cached once (`features`), hardware choices (`device`)
and per-head scores (`metrics`). Below MLflow and the study: the trial that logs and prunes
is `search.engines.trial`."""

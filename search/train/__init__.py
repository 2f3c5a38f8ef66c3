"""One trial trained: its stages and compiled models (`training`), the callbacks and cyclical
learning rates it fits with (`callbacks`, `clr`, `lr_find`), frozen features cached once
(`features`), hardware choices (`device`), per-head scores (`metrics`), and the trial from
config to objective (`trial`)."""

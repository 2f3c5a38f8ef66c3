"""MLflow: one parent run per study and one nested run per trial (`tracking`), the tag names
those runs carry (`tags`), a trial's stored validation and test probabilities
(`probabilities`), models logged, registered and loaded (`registry`, with the model card of
each version in `model_card`; the request forms its pyfunc accepts in `image_payload`), and
per-trial files for optuna-dashboard (`artifacts`)."""

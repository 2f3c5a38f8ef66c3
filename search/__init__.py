"""search: hyperparameter and architecture search for multi-head Keras image classifiers.

The packages sit in one order, lowest first; each imports only those below it (setup.cfg's
import-linter contract, run by `lint-imports` and tests/test_layers.py):

    console | errors | formats | settings   helpers every package may use
    backend    which Keras backend trains (TensorFlow, JAX, PyTorch), chosen before Keras loads
    space      what a trial can be: TrialConfig, spaces, sampler/pruner names, families
    model      the Keras network a config builds
    data       the table, images and input pipelines (tf.data, or numpy on JAX/PyTorch)
    train      fitting one config: stages, callbacks, CLR, metrics, stage steps
    track      MLflow: runs, logged models, the pyfunc and what it accepts
    study      many trials: session, Optuna study and storage, pruning, workers
    views      pages and figures of a study's results
    engines | serve   who runs trials (and the one trial they run) | where a model is used
    final      after the search: refit, ensembles, champion
    commands   one module per verb
    cli        the parser

A lower package that needs something from above is handed it (an argument, a record) or the
thing moves down to the package that owns it; no import climbs, not even inside a function.
"""

__version__ = "0.1.0"

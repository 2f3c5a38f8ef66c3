"""A trial stores its probabilities (search.track.probabilities) as its saved model answers:
one real `trial.run` of a tiny net with tracking and test rows, in the fast tier."""

from __future__ import annotations

import mlflow
import numpy as np

from search.data.table import decode
from search.engines import trial as trial_lib
from search.settings import Settings
from search.space import space as space_lib
from search.space.config import TrialConfig
from search.study.session import Options, Session
from search.track import probabilities, registry
from search.track.tracking import using

TINY = dict(width=8, depth=2, image_size=(32, 32), neck_units=16, head_units=0,
            batch_size=64, clr_mode="triangular", base_lr=0.003, max_lr=0.01, epochs=1)


def test_a_trial_stores_what_its_saved_model_answers_on_its_rows(tmp_path, tiny_csv):
    options = Options(study="probs", data=str(tiny_csv), test_fraction=0.2)
    session = Session.on_data(Settings.resolve(tmp_path / "runs"), options,
                              space_lib.Space(name="t", params=()))
    session.use_device()
    session.start_tracking()
    result = trial_lib.run(TrialConfig(**TINY), session)
    client = mlflow.MlflowClient(session.settings.tracking_uri)
    stored = probabilities.read(client, result.run_id)
    rows = {"val": session.val_rows, "test": session.test_rows}
    assert stored is not None and stored.matches(rows) and len(session.test_rows) > 0
    assert not stored.matches({"val": session.test_rows, "test": session.val_rows})
    with using(session.settings.tracking_uri):
        net, vocab = registry.load(result.model_uri)
    paths = session.table.frame["path"]
    for part, index in rows.items():
        answered = registry.predict_probs(net, [decode(p) for p in paths.iloc[index]])
        assert set(stored.probs[part]) == set(vocab)
        for head, probs in stored.probs[part].items():
            assert probs.dtype == np.float32 and probs.shape == answered[head].shape
            assert np.allclose(probs, answered[head], atol=1e-4), (part, head)
    assert probabilities.read(client, "0" * 32) is None  # no such run: nothing stored

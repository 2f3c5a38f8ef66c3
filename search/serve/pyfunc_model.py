"""MLflow models-from-code entry point for a search model: nothing is pickled.

MLflow copies this file into every logged model, next to a copy of the `search` package
(`code_paths`), which MLflow puts first on sys.path before it runs this file.
"""

import mlflow

from search.track.registry import HeadsModel

mlflow.models.set_model(HeadsModel())

"""MLflow models-from-code entry point for a search model: nothing is pickled.

MLflow copies this file into every logged model; loading it needs the `search` package.
"""

import mlflow

from search.registry import HeadsModel

mlflow.models.set_model(HeadsModel())

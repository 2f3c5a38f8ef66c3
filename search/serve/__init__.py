"""The registered model where models are used: the MLflow pyfunc entry point (`pyfunc_model`;
the forms it accepts are search.track.image_payload), batch prediction (`batch_predict`),
scoring on hold-out data (`evaluate`), and a Keras-native export (`export`)."""

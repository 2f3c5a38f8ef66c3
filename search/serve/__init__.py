"""The registered model where models are used: the MLflow pyfunc entry point and the request
forms it accepts (`pyfunc_model`, `image_payload`), batch prediction (`batch_predict`),
scoring on hold-out data (`evaluate`), and a Keras-native export (`export`)."""

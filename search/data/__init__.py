"""The data a search reads: an annotation CSV and its images checked (`validate`), loaded as a
`Table` and fed as tf.data pipelines (`table`), training augmentation (`augment`), the embedded
synthetic default (`synthetic`), `search eda` (`eda`), and arrays cached on disk and verified
before use (`verified`)."""

DEFAULT_HEADS = ("gender", "imagequality", "age", "weight", "carryingbag", "footwear",
                 "emotion", "bodypose")  # the annotation columns a search predicts by default

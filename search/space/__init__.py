"""Search spaces: a key's value or distribution (`param`), a space read from YAML (`space`) and the
frozen `TrialConfig` one trial trains (`config`). No TensorFlow here."""

"""Search spaces: a key's value or distribution (`param`), a space read from YAML (`space`), the
frozen `TrialConfig` one trial trains (`config`), the pretrained families a space can name
(`families`) and the samplers and pruners it can name (`algorithms`). No TensorFlow here."""

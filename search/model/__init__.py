"""The Keras model: input geometry inside the saved model (`preprocess`), backbones by name and
their ImageNet weights (`backbones`, `weights`; search.space.families, one record each),
the neck and one softmax head per attribute (`heads`), and the assembly of the three
(`assembly`); `preprocess.Mirror` for test-time flips. The layers registered here are what a
saved model needs to load."""

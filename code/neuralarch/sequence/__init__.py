"""Module 5: sequence models — recurrent cells and layers, positional encodings, the
encoder-decoder transformer and decoding. Attention itself is in ``neuralarch.layers.attention``.
Import from the concept modules."""

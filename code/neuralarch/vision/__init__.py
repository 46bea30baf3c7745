"""Module 4: computer vision — LeNet to ResNet, receptive fields, transfer learning, vision
transformers, augmentation, attribution methods and style transfer. The candlestick project lives
in ``neuralarch.projects.market``.
Import from the concept modules."""

"""Module 4: computer vision — LeNet to ResNet, receptive fields, transfer learning, vision
transformers, augmentation, attribution methods, style transfer, and the candlestick project.
Import from the concept modules."""

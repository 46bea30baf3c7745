"""Module 3: custom layers and OOP in PyTorch — modules, layers, initialisation, normalisation,
the functional API — and the config-built models of module 1 (``mlp``, ``torch_decoder``).
Import from the concept modules."""

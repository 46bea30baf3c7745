"""Module 3: custom layers and OOP in PyTorch — modules, layers, initialisation, normalisation,
the functional API, and the hybrid market-signal network. Import from the concept modules."""

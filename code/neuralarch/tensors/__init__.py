"""Module 1: tensors. One file per concept:

``anatomy`` (storage, strides, views), ``memory`` (training-memory accounting), ``broadcasting``,
``reshaping`` and ``einsum_ops`` (tensor operations), ``market_engine`` (Project 1).
Import from the concept modules, e.g. ``from neuralarch.tensors.anatomy import describe``.
"""

"""Module 1: tensors. One file per concept:

``anatomy`` (storage, strides, views), ``memory`` (training-memory accounting), ``broadcasting``,
``reshaping`` and ``einsum_ops`` (tensor operations). Project 1's market engine lives in
``neuralarch.projects.market.engine``.
Import from the concept modules, e.g. ``from neuralarch.tensors.anatomy import describe``.
"""

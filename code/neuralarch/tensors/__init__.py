"""Module 1: tensors — anatomy (storage, strides, views), memory accounting, operations, and the
market-data tensor engine of Project 1. Import from the concept modules, e.g.
``from neuralarch.tensors.anatomy import describe``."""

"""Language models: the book's decoder-only transformer and what trains and serves it (Module 6).

Introduced in lesson 6.1 (``m06-l01``). :mod:`~neuralarch.lm.model` is the decoder-only model
(RMSNorm, rotary positions, grouped-query attention, SwiGLU, tied embeddings) that Module 8
and the later weeks reuse; :mod:`~neuralarch.lm.flash_attention` is the tiled attention of
lesson 6.4; :mod:`~neuralarch.lm.generate` samples from a model with a key-value cache. The
other modules (tokenisers, pretraining, mixture of experts) are introduced by their lessons.
"""

from neuralarch.layers.attention import KVCache

__all__ = ["KVCache"]

"""The market projects, all on the synthetic market of :mod:`neuralarch.data.market`.

``engine`` (Project 1, ``m01-l06``): rolling windows and features as tensor operations;
``walk_forward`` and ``hybrid`` (Project 3, ``m03-l06``): leak-free validation folds and a causal
hybrid network for market signals; ``candlestick_patterns``, ``candlestick_render``,
``candlestick`` and ``candlestick_net`` (Project 4, ``m04-l06``): pattern rules, chart images,
the labelled data set and the chart CNN. Import from the concept modules.
"""

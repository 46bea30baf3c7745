"""Project 9 (``m09-l06``): detect laundering transactions in a generated transaction network
with a GNN, an MLP on node features and gradient boosting on hand-made graph features, under
class imbalance, on a split by time."""

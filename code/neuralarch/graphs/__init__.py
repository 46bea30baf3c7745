"""Graph neural networks from scratch (Module 9, ``m09``): graphs as ``edge_index`` tensors,
message passing with scatter operations, GCN and GAT layers equal to PyTorch Geometric's, a
GraphSAGE-style neighbour sampler, and a generated transaction network with the money-laundering
typologies of IBM's AMLworld benchmark. Import from the concept modules."""

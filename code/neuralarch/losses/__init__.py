"""Module 2: loss functions from scratch, each checked against torch.nn.functional.
Import from the concept modules."""

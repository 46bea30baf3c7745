"""Module 2: optimizers and learning-rate schedules from scratch, as real torch.optim classes.
Import from the concept modules."""

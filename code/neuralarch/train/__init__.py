"""One reusable training loop: progress bar, metric history, exact checkpoint/resume.
Import from the concept modules."""

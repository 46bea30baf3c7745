"""The 14-week course track: assignment helpers (grading) and reference building blocks.
Import from the concept modules."""

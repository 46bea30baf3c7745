"""Project 5: "Financial Talk -> Plain English", a translator trained on a generated corpus.
Import from the concept modules."""

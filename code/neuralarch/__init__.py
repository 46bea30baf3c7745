"""neuralarch: the tested code of the textbook *Neural Architecture*.

Subpackages follow the parts of the book. Importing the package does no work: no device probing,
no seeding, no file access.
"""

__version__ = "0.1.0"

REPOSITORY = "https://github.com/neural-architecture/neural-architecture"
"""Where the book and this package live; data files are fetched from its raw files by default."""

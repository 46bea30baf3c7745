"""The book's projects: code that combines the building blocks, the training loop and the domain
subpackages into one application. Projects sit at the top of the package: they may import
anything, and nothing else imports them. Import from the concept modules."""

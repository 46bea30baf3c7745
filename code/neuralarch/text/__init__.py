"""Text for the NLP lessons: tokenising, vocabularies, word2vec and the text CNN.
Import from the concept modules."""

"""Text rules shared by synthesis, training and scoring: the written form of references and the
scoring normalisers (`normalize`), the medical lexicon (`lexicon`)."""

"""The critic: a classifier trained on human acceptability labels that scores the corpus."""

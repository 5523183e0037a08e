"""The corpus: reading triple files, normalizing, de-duplicating and bulk loading them."""

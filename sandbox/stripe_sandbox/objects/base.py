"""The undo journal every sandbox object takes part in, and shared types.

Part of ``stripe_sandbox``, a test and demo tool: never used with real money.
"""

from __future__ import annotations

from typing import Any

Json = dict[str, Any]

_JOURNALS: list[dict[int, tuple[Any, dict[str, Any]]]] = []
"""Open undo journals (innermost last); see :class:`Tracked`."""


class Tracked:
    """Records an object's pre-image in every open undo journal before its first change.

    This makes rolling back a failed request cost what the request touched,
    not the size of the whole state.  Lists and dicts held by an object must be
    replaced, not mutated in place, for the journal to see the change.
    """

    def __setattr__(self, name: str, value: Any) -> None:
        for journal in _JOURNALS:
            if id(self) not in journal:
                journal[id(self)] = (self, dict(self.__dict__))
        object.__setattr__(self, name, value)


def open_journal() -> dict[int, tuple[Any, dict[str, Any]]]:
    journal: dict[int, tuple[Any, dict[str, Any]]] = {}
    _JOURNALS.append(journal)
    return journal


def close_journal(journal: dict[int, tuple[Any, dict[str, Any]]], *, undo: bool) -> None:
    """Stop recording; with ``undo`` put every recorded object back as it was."""
    for i, open_one in enumerate(_JOURNALS):
        if open_one is journal:  # by identity: two journals may be equal
            del _JOURNALS[i]
            break
    if undo:
        for obj, before in journal.values():
            obj.__dict__.clear()
            obj.__dict__.update(before)


TIMES = "\u00d7"
"""The multiplication sign (U+00D7) Stripe uses in line descriptions ("8 x Seat")."""

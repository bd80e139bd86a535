"""A tiny transition-table helper shared by the order, print-job and printer state machines.

Each app declares its table once in its own states.py; services call `check` before any status write.
"""

from __future__ import annotations

from collections.abc import Mapping

from lab.lib.errors import InvalidTransition


class StateMachine:
    def __init__(self, name: str, transitions: Mapping[str, frozenset[str]]) -> None:
        self.name = name
        self.transitions = transitions

    def can(self, from_state: str, to_state: str) -> bool:
        return to_state in self.transitions.get(from_state, frozenset())

    def check(self, from_state: str, to_state: str) -> None:
        if not self.can(from_state, to_state):
            raise InvalidTransition(machine=self.name, from_state=from_state, to_state=to_state)

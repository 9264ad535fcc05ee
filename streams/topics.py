"""Topic names of contract v1 and where each output event type goes."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class TopicNames:
    """Contract topic names, with an optional prefix (tests use a fresh one each)."""

    prefix: str = ""

    def _name(self, base: str) -> str:
        return f"{self.prefix}{base}"

    @property
    def volunteers(self) -> str:
        return self._name("volunteers")

    @property
    def needs(self) -> str:
        return self._name("needs")

    @property
    def responses(self) -> str:
        return self._name("assignment-responses")

    @property
    def assignments(self) -> str:
        return self._name("assignments")

    @property
    def unmatched(self) -> str:
        return self._name("needs-unmatched")

    @property
    def dead_letters(self) -> str:
        return self._name("dead-letters")

    @property
    def inputs(self) -> tuple[str, str, str]:
        return (self.volunteers, self.needs, self.responses)

    @property
    def outputs(self) -> tuple[str, str, str]:
        return (self.assignments, self.unmatched, self.dead_letters)

    def for_input_type(self, event_type: str) -> str:
        if event_type.startswith("volunteer."):
            return self.volunteers
        if event_type.startswith("need."):
            return self.needs
        return self.responses

    def for_output_type(self, event_type: str) -> str:
        if event_type.startswith("assignment."):
            return self.assignments
        if event_type == "need.unmatched":
            return self.unmatched
        return self.dead_letters

    def partitions(self, *, needs: int, volunteers: int, other: int) -> dict[str, int]:
        return {
            self.volunteers: volunteers,
            self.needs: needs,
            self.responses: other,
            self.assignments: other,
            self.unmatched: other,
            self.dead_letters: other,
        }

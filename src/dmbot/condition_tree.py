"""A compiled condition: a small tree of objects that test a `Context`.

`all`, `any` and `not` nest; the leaves are `FieldTest`s, one operator on one field. The tree
is built once, when the rules load, and `test` runs for every rule on every message, so the
loops below are plain loops and a field's value is read through the context's memo.

Every node knows its `truth` when it can be decided without a message (`{}` is always true,
an empty list matches nothing): the delete guard uses it. And every node can `describe`
itself, which is how a reload tells a changed rule from an unchanged one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeAlias

from dmbot.fields import Context, Field, View, memo_key

Check: TypeAlias = Callable[[Any, Context], bool]


class Condition(Protocol):
    @property
    def truth(self) -> bool | None: ...  # known without a message: always true / false

    @property
    def relationship(self) -> bool: ...  # some part needs Event.relationship

    def test(self, ctx: Context) -> bool: ...

    def describe(self) -> str: ...


@dataclass(frozen=True, slots=True)
class AllOf:
    items: tuple[Condition, ...]

    def test(self, ctx: Context) -> bool:
        for item in self.items:  # noqa: SIM110 -- the hot path: a loop beats a generator
            if not item.test(ctx):
                return False
        return True

    @property
    def truth(self) -> bool | None:
        known = [item.truth for item in self.items]
        if any(value is False for value in known):
            return False
        return True if all(value is True for value in known) else None

    @property
    def relationship(self) -> bool:
        return any(item.relationship for item in self.items)

    def describe(self) -> str:
        return "all(" + ", ".join(item.describe() for item in self.items) + ")"


@dataclass(frozen=True, slots=True)
class AnyOf:
    items: tuple[Condition, ...]

    def test(self, ctx: Context) -> bool:
        for item in self.items:  # noqa: SIM110 -- the hot path: a loop beats a generator
            if item.test(ctx):
                return True
        return False

    @property
    def truth(self) -> bool | None:
        known = [item.truth for item in self.items]
        if any(value is True for value in known):
            return True
        return False if all(value is False for value in known) else None

    @property
    def relationship(self) -> bool:
        return any(item.relationship for item in self.items)

    def describe(self) -> str:
        return "any(" + ", ".join(item.describe() for item in self.items) + ")"


@dataclass(frozen=True, slots=True)
class Not:
    item: Condition

    def test(self, ctx: Context) -> bool:
        return not self.item.test(ctx)

    @property
    def truth(self) -> bool | None:
        known = self.item.truth
        return None if known is None else not known

    @property
    def relationship(self) -> bool:
        return self.item.relationship

    def describe(self) -> str:
        return f"not({self.item.describe()})"


@dataclass(frozen=True, slots=True)
class FieldTest:
    field: Field
    view: View
    key: str  # the memo key of this field in this view (a str: cheapest to hash)
    check: Check
    text: str
    truth: bool | None = None

    def test(self, ctx: Context) -> bool:
        value = ctx.get(self.field, self.view, self.key)
        if self.field.many:
            assert isinstance(value, tuple)
            check = self.check
            for item in value:  # noqa: SIM110 -- the hot path: a loop beats a generator
                if check(item, ctx):
                    return True
            return False
        return self.check(value, ctx)

    @property
    def relationship(self) -> bool:
        return self.field.relationship

    def describe(self) -> str:
        return self.text


def field_test(
    field: Field, view: View, check: Check, text: str, truth: bool | None = None
) -> FieldTest:
    """`check` on the value of `field` in the form `view` (raw, case-folded, UTF-8 bytes...)."""
    return FieldTest(field, view, memo_key(field, view), check, text, truth)


ALWAYS: Condition = AllOf(())

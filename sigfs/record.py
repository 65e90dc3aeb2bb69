"""``@record``: a class whose fields are its annotations, like
``@dataclasses.dataclass(frozen=True)``, made in a fraction of the time.

Why not dataclasses: ``sigfs checkpoint`` imports every format before it
freezes the process, and there start-up is the largest part of a small
checkpoint.  Measured here, the formats' 21 dataclasses took 22 ms to
define (six ``exec`` calls each, and their annotations read as strings) and
``dataclasses`` 10 ms to import (it pulls in ``inspect``): a third of the
whole command for a 1 MiB process.  ``@record`` compiles one function, the
``__init__``, and shares the rest between classes.

What a record class gets (the subset of dataclasses sigfs uses):

- ``__init__`` taking the fields, in annotation order, by position or by
  keyword; a class attribute is the field's default, ``field(default_factory=f)``
  makes a fresh one per instance; then ``__post_init__()`` if the class has it;
- ``__eq__`` (same class, equal fields) and, when frozen, ``__hash__`` over
  the fields; a mutable record is unhashable, as a dataclass is;
- ``__repr__`` as ``Name(field=value, ...)`` and ``__match_args__``;
- when frozen (the default), assignment and deletion raise
  :class:`FrozenInstanceError` (an ``AttributeError``).

:func:`replace` and :func:`fields` do what dataclasses' do.  Annotations
are never evaluated, so ``from __future__ import annotations`` is fine; a
``ClassVar`` annotation is not a field.  Inheritance between records is not
supported (nothing in sigfs needs it): a base class's annotations are not
fields.
"""

from __future__ import annotations

import operator
from collections.abc import Callable

# Nor is ``typing`` imported at run time, here or in any module `sigfs
# checkpoint` loads before the freeze (4-9 ms of start-up here, more than any
# other module of the standard library it needs): its names are for mypy,
# and the few used at run time get stand-ins.
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, TypeVar, dataclass_transform, overload

    T = TypeVar("T")
else:

    def dataclass_transform(**_options):  # only for type checkers
        return lambda func: func


FIELDS = "__record_fields__"


class FrozenInstanceError(AttributeError):
    """Assignment to a field of a frozen record."""


class _Factory:
    __slots__ = ("make",)

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make


def field(*, default_factory: Callable[[], T]) -> T:
    """A field whose default is ``default_factory()``, made for each instance."""
    return _Factory(default_factory)  # type: ignore[return-value]


def fields(cls_or_instance: object) -> tuple[str, ...]:
    """The field names of a record class or instance, in order."""
    names: tuple[str, ...] | None = getattr(cls_or_instance, FIELDS, None)
    if names is None:
        raise TypeError(f"{cls_or_instance!r} is not a record")
    return names


def replace(obj: T, /, **changes: Any) -> T:
    """A copy of the record ``obj`` with ``changes`` (checked by ``__init__``
    and ``__post_init__`` like any new instance)."""
    cls = type(obj)
    values = {name: getattr(obj, name) for name in fields(cls)}
    unknown = set(changes) - set(values)
    if unknown:
        raise TypeError(f"{cls.__qualname__} has no field {sorted(unknown)[0]!r}")
    values.update(changes)
    return cls(**values)


if TYPE_CHECKING:

    @overload
    def record(cls: type[T], /) -> type[T]: ...

    @overload
    def record(*, frozen: bool = True) -> Callable[[type[T]], type[T]]: ...


@dataclass_transform(frozen_default=True, field_specifiers=(field,))
def record(cls: type[T] | None = None, /, *, frozen: bool = True) -> Any:
    """Make ``cls`` a record (see the module docstring)."""

    def make(klass: type[T]) -> type[T]:
        return _make(klass, frozen)

    return make if cls is None else make(cls)


def _is_classvar(annotation: object) -> bool:
    text = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    return isinstance(text, str) and text.split("[")[0].split(".")[-1] == "ClassVar"


def _make(cls: type[T], frozen: bool) -> type[T]:
    names = tuple(
        name
        for name, annotation in cls.__dict__.get("__annotations__", {}).items()
        if not _is_classvar(annotation)
    )
    scope: dict[str, Any] = {"_set": object.__setattr__, "_factory": _Factory}
    params, body = [], []
    for name in names:
        if name in cls.__dict__:
            default = cls.__dict__[name]
            scope[f"_d_{name}"] = default
            params.append(f"{name}=_d_{name}")
            if isinstance(default, _Factory):
                # Not left on the class, where it would read as the value.
                delattr(cls, name)
                body.append(f" if {name} is _d_{name}: {name} = _d_{name}.make()")
        elif params and "=" in params[-1]:
            raise TypeError(
                f"{cls.__qualname__}: field {name!r} without a default follows one with"
            )
        else:
            params.append(name)
        body.append(f" _set(self, {name!r}, {name})" if frozen else f" self.{name} = {name}")
    if hasattr(cls, "__post_init__"):
        body.append(" self.__post_init__()")
    source = f"def __init__(self, {', '.join(params)}) -> None:\n" + "\n".join(body or [" pass"])
    exec(source, scope)  # noqa: S102 - the source is made from identifiers only
    init = scope["__init__"]
    init.__qualname__ = f"{cls.__qualname__}.__init__"
    init.__module__ = cls.__module__

    values: Callable[[object], Any] = operator.attrgetter(*names) if names else lambda _: ()

    def __eq__(self: object, other: object) -> bool:
        if other.__class__ is not self.__class__:
            return NotImplemented
        return bool(values(self) == values(other))

    def __repr__(self: object) -> str:
        inner = ", ".join(f"{name}={getattr(self, name)!r}" for name in names)
        return f"{type(self).__qualname__}({inner})"

    members: dict[str, Any] = {
        "__init__": init,
        "__eq__": __eq__,
        "__repr__": __repr__,
        "__match_args__": names,
        FIELDS: names,
    }
    if frozen:

        def __hash__(self: object) -> int:
            return hash(values(self))

        def __setattr__(self: object, name: str, value: object) -> None:
            raise FrozenInstanceError(f"cannot assign to field {name!r}")

        def __delattr__(self: object, name: str) -> None:
            raise FrozenInstanceError(f"cannot delete field {name!r}")

        members.update(__hash__=__hash__, __setattr__=__setattr__, __delattr__=__delattr__)
    else:
        members["__hash__"] = None
    for key, value in members.items():
        # What the class defines itself stays (a class body with __eq__ has
        # __hash__ = None, which is replaced, as dataclasses does).
        if key not in cls.__dict__ or (key == "__hash__" and cls.__dict__[key] is None):
            setattr(cls, key, value)
    return cls

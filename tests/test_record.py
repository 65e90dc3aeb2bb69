"""sigfs.record: the light dataclass every format model is made with.

Pure layer: no process, no mount.  Each behaviour dataclasses gave the
models (and that sigfs relies on) is checked here, beside the one thing it
is for: importing the formats must not import dataclasses or inspect.
"""

from __future__ import annotations

from typing import ClassVar

import pytest
from conftest import modules_after

from sigfs.record import FrozenInstanceError, field, fields, record, replace


@record
class Point:
    """A frozen record with defaults and a check."""

    x: int
    y: int
    label: str = ""
    tags: tuple[str, ...] = ()
    unit: ClassVar[str] = "px"  # not a field

    def __post_init__(self) -> None:
        if self.x < 0:
            raise ValueError(f"x must be >= 0, not {self.x}")


@record(frozen=False)
class Box:
    name: str
    held: bool = False
    items: dict[str, int] = field(default_factory=dict)


def test_fields_in_annotation_order_without_classvars() -> None:
    assert fields(Point) == ("x", "y", "label", "tags")
    assert fields(Point(1, 2)) == fields(Point)
    assert Point.__match_args__ == ("x", "y", "label", "tags")
    assert Point.unit == "px"
    with pytest.raises(TypeError, match="not a record"):
        fields(object())


def test_init_by_position_keyword_and_default() -> None:
    p = Point(1, 2, tags=("a",))
    assert (p.x, p.y, p.label, p.tags) == (1, 2, "", ("a",))
    assert Point(y=2, x=1) == Point(1, 2, "", ())
    with pytest.raises(TypeError):
        Point(1)  # type: ignore[call-arg]
    with pytest.raises(TypeError):
        Point(1, 2, colour="red")  # type: ignore[call-arg]


def test_post_init_runs_on_every_instance_replace_included() -> None:
    with pytest.raises(ValueError, match="x must be >= 0, not -1"):
        Point(-1, 0)
    with pytest.raises(ValueError, match="not -5"):
        replace(Point(1, 2), x=-5)


def test_equality_and_hash_follow_the_fields_and_the_class() -> None:
    a, b = Point(1, 2, "p"), Point(1, 2, "p")
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert a != Point(1, 3, "p")
    assert a != (1, 2, "p", ())  # not equal to a tuple of the same values

    @record
    class Other:
        x: int
        y: int
        label: str = ""
        tags: tuple[str, ...] = ()

    assert a != Other(1, 2, "p")


def test_frozen_refuses_assignment_and_deletion() -> None:
    p = Point(1, 2)
    with pytest.raises(FrozenInstanceError, match="cannot assign to field 'x'"):
        p.x = 3  # type: ignore[misc]
    with pytest.raises(FrozenInstanceError):
        del p.y  # type: ignore[misc]
    with pytest.raises(AttributeError):  # FrozenInstanceError is one
        p.other = 1  # type: ignore[attr-defined]
    assert p == Point(1, 2)


def test_replace_copies_with_changes_and_names_an_unknown_field() -> None:
    p = Point(1, 2, "a", ("t",))
    q = replace(p, y=5)
    assert q == Point(1, 5, "a", ("t",)) and p == Point(1, 2, "a", ("t",))
    with pytest.raises(TypeError, match="Point has no field 'z'"):
        replace(p, z=1)


def test_repr_names_every_field() -> None:
    assert repr(Point(1, 2, "a")) == "Point(x=1, y=2, label='a', tags=())"


def test_mutable_record_with_a_fresh_default_per_instance() -> None:
    a, b = Box("a"), Box("a")
    a.items["k"] = 1
    a.held = True
    assert b.items == {} and not b.held
    assert a != b and Box("x") == Box("x")
    assert "items" not in Box.__dict__  # the factory is not left as a value
    with pytest.raises(TypeError, match="unhashable"):
        hash(a)


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError, match="field 'b' without a default follows one with"):

        @record
        class Bad:
            a: int = 0
            b: int  # type: ignore[misc]


def test_methods_the_class_defines_are_kept() -> None:
    @record
    class Named:
        name: str

        def __repr__(self) -> str:
            return f"<{self.name}>"

    assert repr(Named("n")) == "<n>" and Named("n") == Named("n")


def test_importing_the_formats_imports_neither_dataclasses_nor_typing() -> None:
    """What `sigfs checkpoint` imports before it freezes a process (and
    with --pre-copy): the point of sigfs.record, and of every module there
    keeping typing's names for mypy, is that this stays light."""
    loaded = modules_after(
        "sigfs.cli, sigfs.checkpoint, sigfs.files, sigfs.image, sigfs.tree, sigfs.tracer,"
        " sigfs.pages, sigfs.formats.manifest, sigfs.tracking"
    )
    assert not {"dataclasses", "inspect", "typing"} & loaded, loaded
    assert "sigfs.tracking" in loaded  # the probe imported what it says

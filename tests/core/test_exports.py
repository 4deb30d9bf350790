"""The public surface of ``matching_engine.core`` and the shape of its errors."""

from __future__ import annotations

import types

import pytest

import matching_engine.core as core
from matching_engine.core import (
    ErrorCode,
    InvalidAmend,
    InvalidCommand,
    InvalidLot,
    InvalidTick,
    MatchingError,
    QuantityOutOfRange,
    UnknownSymbol,
)


def test_all_exports_exactly_the_public_names_of_the_module() -> None:
    public = {
        name
        for name, value in vars(core).items()
        if not name.startswith("_") and not isinstance(value, types.ModuleType)
    }
    assert set(core.__all__) == public
    assert len(core.__all__) == len(set(core.__all__))


def test_every_exported_name_is_defined() -> None:
    for name in core.__all__:
        assert getattr(core, name) is not None, name


def test_matching_error_cannot_be_instantiated_directly() -> None:
    with pytest.raises(TypeError):
        MatchingError("boom")


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (InvalidCommand, ErrorCode.VALIDATION_ERROR),
        (UnknownSymbol, ErrorCode.UNKNOWN_SYMBOL),
        (InvalidTick, ErrorCode.INVALID_TICK),
        (InvalidLot, ErrorCode.INVALID_LOT),
        (QuantityOutOfRange, ErrorCode.QUANTITY_OUT_OF_RANGE),
        (InvalidAmend, ErrorCode.INVALID_AMEND),
    ],
)
def test_matching_error_subclasses_carry_their_code(
    error: type[MatchingError], code: ErrorCode
) -> None:
    instance = error("what went wrong")
    assert instance.code is code
    assert instance.detail == "what went wrong"
    assert str(instance) == "what went wrong"
    assert isinstance(instance, MatchingError)
    assert isinstance(instance, InvalidCommand)
    with pytest.raises(error):
        raise instance

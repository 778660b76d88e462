from __future__ import annotations

import pytest

import modelport.errors as errors
from modelport.errors import ModelportError, error_class_for, error_from_body

ALL = [ModelportError, *errors._all_subclasses(ModelportError)]


def test_every_error_class_has_a_unique_code() -> None:
    codes = [c.error_code for c in ALL]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_every_error_class_has_a_4xx_or_5xx_status(cls: type[ModelportError]) -> None:
    assert 400 <= cls.status <= 599


@pytest.mark.parametrize("cls", ALL, ids=lambda c: c.__name__)
def test_error_code_maps_back_to_the_same_class(cls: type[ModelportError]) -> None:
    assert error_class_for(cls.error_code, cls.status) is cls


def test_unknown_code_falls_back_to_status() -> None:
    assert error_class_for("SOMETHING_NEW", 404) is errors.NotFound
    assert error_class_for(None, 418) is ModelportError


def test_error_from_body_keeps_message_and_retry_after() -> None:
    err = error_from_body(429, {"error_code": "REQUEST_LIMIT_EXCEEDED", "message": "slow down"}, "3")
    assert isinstance(err, errors.RequestLimitExceeded)
    assert (err.message, err.retry_after) == ("slow down", 3)


def test_to_body_is_the_databricks_shape() -> None:
    body = errors.ResourceDoesNotExist("Endpoint with name 'x' does not exist.").to_body()
    assert body == {
        "error_code": "RESOURCE_DOES_NOT_EXIST",
        "message": "Endpoint with name 'x' does not exist.",
    }


def test_exported_names_are_complete() -> None:
    public = {n for n, v in vars(errors).items() if isinstance(v, type) and issubclass(v, ModelportError)}
    assert public <= set(errors.__all__)

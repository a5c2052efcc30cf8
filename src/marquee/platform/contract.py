"""The public API's contract, one definition for every service: the problem-details schema on
every error status, one money type, request numbers that are numbers, and what a partial
update may leave out but not clear.

A service's routes name the error statuses they answer (``errors(404, 409)``);
``document_problems`` then rewrites the service's OpenAPI document so that every error
status, those included, is ``application/problem+json`` with ``ProblemDetails``, and adds the
statuses every route of a kind can give (400 and 413 for a body, 422 for any input).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from decimal import Decimal
from http import HTTPStatus
from typing import Annotated, Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi
from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema

from marquee.platform.problems import PROBLEM_CONTENT_TYPE

PROBLEM_SCHEMA = "ProblemDetails"
PROBLEM_REF = f"#/components/schemas/{PROBLEM_SCHEMA}"
# FastAPI's own 422 shapes, replaced by ProblemDetails (Marquee's 422 is a problem with errors).
_FASTAPI_VALIDATION = ("HTTPValidationError", "ValidationError")
MONEY_CENTS = Decimal("0.01")
MAX_MONEY = Decimal("999999999999.99")


class ProblemDetails(BaseModel):
    """An RFC 9457 problem: every error Marquee answers, whatever its status."""

    model_config = ConfigDict(extra="allow", title=PROBLEM_SCHEMA)

    type: str = Field(examples=["https://marquee.dev/problems/insufficient-inventory"])
    title: str = Field(examples=["Conflict"])
    status: int = Field(examples=[409])
    detail: str = Field(examples=["Only 1 seat(s) left; 2 requested."])
    code: str = Field(
        description="Stable and machine-readable: what to branch on.",
        examples=["insufficient_inventory"],
    )
    request_id: str | None = Field(
        description="The X-Request-ID of the request; every log line it caused carries it.",
        examples=["c22f20da5322431d88543366f8caff78"],
    )


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """FastAPI ``responses=`` for these error statuses, each a problem document."""
    return {status: {"description": HTTPStatus(status).phrase} for status in statuses}


# -- money and numbers ---------------------------------------------------------------------


def _money(value: Any) -> Any:
    """A JSON number, never a string or a boolean; a binary float is read as the amount in
    cents it stands for (``0.57`` arrives as ``0.5700000000000001`` from some encoders)."""
    if isinstance(value, bool) or not isinstance(value, int | float | Decimal):
        raise ValueError("must be a JSON number, such as 1280 or 99.5")
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("must be a finite number")
        cents = round(value, 2)
        if math.isclose(value, cents, rel_tol=1e-12, abs_tol=1e-9):
            return Decimal(repr(cents))
        return Decimal(repr(value))
    return value


_MONEY_SCHEMA: dict[str, Any] = {
    "type": "number",
    "description": "An amount of money as a JSON number with at most two decimal places "
    "(exact: never rounded through a binary float on Marquee's side).",
    "examples": [1280],
}

Money = Annotated[Decimal, WithJsonSchema(_MONEY_SCHEMA)]
"""An amount in a response: a JSON number with exactly its digits (``1280``, ``99.5``)."""

MoneyIn = Annotated[
    Decimal,
    BeforeValidator(_money),
    Field(ge=0, le=MAX_MONEY, decimal_places=2, allow_inf_nan=False),
    WithJsonSchema(
        {**_MONEY_SCHEMA, "minimum": 0, "maximum": float(MAX_MONEY), "multipleOf": 0.01}
    ),
]
"""An amount in a request: a JSON number from 0 with at most two decimal places."""


def _number(value: Any) -> Any:
    if isinstance(value, bool | str | bytes):
        raise ValueError("must be a JSON number")
    return value


NUMBER_ONLY = BeforeValidator(_number)
"""Goes last in an ``Annotated`` number of a request body (after its ``Field`` constraints,
so they stay in the schema): ``2`` (or ``2.0``, the same JSON integer), never ``"2"`` or
``true``."""

StrictInt = Annotated[int, NUMBER_ONLY]
"""An integer in a request body, with no other constraint (see ``NUMBER_ONLY``)."""


# -- partial updates -----------------------------------------------------------------------


def not_null(*names: str) -> Callable[[dict[str, Any]], None]:
    """A ``json_schema_extra`` hook: these optional fields may be left out but not sent as
    null, so their schema is the plain type (no ``null``, no ``default: null``)."""

    def rewrite(schema: dict[str, Any]) -> None:
        for name in names:
            field = schema.get("properties", {}).get(name)
            if field is None:
                continue
            field.pop("default", None)
            choices = field.pop("anyOf", None)
            if choices is not None:
                kept = [choice for choice in choices if choice.get("type") != "null"]
                if len(kept) == 1:
                    for key, value in kept[0].items():
                        field.setdefault(key, value)
                else:
                    field["anyOf"] = kept

    return rewrite


# -- the document --------------------------------------------------------------------------


def _problem(status: str, description: str | None = None) -> dict[str, Any]:
    return {
        "description": description or HTTPStatus(int(status)).phrase,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
    }


def problems_documented(document: dict[str, Any]) -> dict[str, Any]:
    """``document`` (an OpenAPI document) with every error status as a problem document, and
    the statuses any route with input can answer: 422 for invalid input, and for a body 400
    (not JSON) and 413 (over the size limit). Pure; the document is changed in place."""
    for operations in (document.get("paths") or {}).values():
        for operation in operations.values():
            if not isinstance(operation, dict) or "responses" not in operation:
                continue
            responses: dict[str, Any] = operation["responses"]
            if "requestBody" in operation:
                responses.setdefault("400", {"description": "The body is not valid JSON."})
                responses.setdefault("413", {})
                responses.setdefault("422", {})
            if operation.get("parameters"):
                responses.setdefault("422", {})
            for status in list(responses):
                if status.isdigit() and int(status) >= 400:
                    responses[status] = _problem(status, responses[status].get("description"))
            operation["responses"] = dict(sorted(responses.items()))
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for name in _FASTAPI_VALIDATION:
        schemas.pop(name, None)
    schemas[PROBLEM_SCHEMA] = ProblemDetails.model_json_schema(
        ref_template="#/components/schemas/{model}"
    )
    return document


def document_problems(app: FastAPI) -> None:
    """Make ``app.openapi()`` document every error as ``application/problem+json``."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = get_openapi(
                title=app.title,
                version=app.version,
                openapi_version=app.openapi_version,
                description=app.description,
                routes=app.routes,
            )
            app.openapi_schema = problems_documented(document)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

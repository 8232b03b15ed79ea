"""Request and response bodies of the JSON API (validated by pydantic, documented in OpenAPI)."""

from __future__ import annotations

from decimal import Decimal
from typing import Annotated, Any

from ninja import Schema
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    GetCoreSchemaHandler,
    GetJsonSchemaHandler,
    StrictBool,
    StrictInt,
    StrictStr,
    field_validator,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema, PydanticCustomError, core_schema

from service import jsonbody
from service.notifications import validation as v
from service.numbers import ascii_int, ascii_int_pattern


def _check_target(value: Any) -> str:
    if not isinstance(value, str) or not v.valid_target_id(value):
        raise PydanticCustomError("invalid_field", "must be a string of 1-256 printable characters")
    return value


class _TargetIdType:
    """A recipient or topic id, validated and documented by one rule (``validation.valid_target_id``). A plain
    validator, because pydantic's own string check cannot read a lone surrogate and would answer with its own
    words. It is the ``TargetId`` component of the OpenAPI document, so its long pattern
    (``printable_pattern``) is written once in the bodies; ninja inlines it into query parameters."""

    @classmethod
    def __get_pydantic_core_schema__(cls, source: Any, handler: GetCoreSchemaHandler) -> CoreSchema:
        text = core_schema.str_schema(min_length=1, max_length=v.MAX_ID_LENGTH)
        return core_schema.no_info_plain_validator_function(
            _check_target, ref="TargetId", json_schema_input_schema=text
        )

    @classmethod
    def __get_pydantic_json_schema__(
        cls, schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        reference = handler(schema)
        handler.resolve_ref_schema(reference)["pattern"] = v.printable_pattern()
        return reference


TargetId = Annotated[str, _TargetIdType]
# ``event``: validated by ``event_problem``; the pattern (a look-ahead, which pydantic's regex engine lacks)
# documents that rule.
EventName = Annotated[
    StrictStr, Field(min_length=1, max_length=64, json_schema_extra={"pattern": v.EVENT_PATTERN})
]


def _digits(value: Any) -> Any:
    """Query integers are ASCII digits only (pydantic alone takes ``+5``, ``1_000``, `` 5 ``, ``5.0``)."""
    if isinstance(value, str):
        number = ascii_int(value)
        if number is None:
            raise PydanticCustomError("invalid_field", "must be a whole number written in ASCII digits")
        return number
    return value


def _whole(value: Any) -> Any:
    """A JSON number with a zero fraction (``60.0``, ``6e1``) is the integer it writes: JSON Schema 2020-12
    counts it as an ``integer``, so the OpenAPI document's ``type: integer`` allowed it and the server refused
    it. Other floats, booleans and strings stay what they are, for ``StrictInt`` to refuse."""
    if type(value) is float and value.is_integer():
        return int(value)
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value():
        return int(value)  # ``1e20``: service.jsonbody keeps floats written with an exponent as Decimal
    return value


# Body integers (JSON Schema's ``integer``: ``60.0`` is 60). The bounds sit on the integer, inside the
# conversion: put on the field of an optional one, they reached the OpenAPI document as ``ge``/``le``, which
# JSON Schema does not know (``ttl: 59`` was allowed).
PublishTtl = Annotated[StrictInt, Field(ge=v.MIN_TTL, le=v.MAX_TTL), BeforeValidator(_whole)]
TokenTtl = Annotated[StrictInt, Field(ge=1, le=86_400), BeforeValidator(_whole)]
PageLimit = Annotated[int, BeforeValidator(_digits)]  # bounds (1-100) are given where it is used
# A notification id as text (``before``, the ``{id}`` of ``/v1/inbox/{id}/read``): validated by ``ascii_int``
# where it is used; the pattern documents that rule.
Cursor = Annotated[StrictStr, Field(json_schema_extra={"pattern": ascii_int_pattern()})]


class InputModel(BaseModel):
    """Base of request bodies: pydantic itself, not ninja's ``Schema``, whose wrap validator (built to read
    Django model instances through ``DjangoGetter``) validates a body twice when ``extra`` is forbidden: 14 %
    of a worker's time on the publish path. Same config as ``Schema`` (``from_attributes``), so the same
    errors; ninja documents and validates plain pydantic models alike."""

    model_config = ConfigDict(from_attributes=True, extra="forbid")

    @model_validator(mode="before")
    @classmethod
    def _readable_names(cls, data: Any) -> Any:
        """pydantic cannot read a name holding a lone surrogate (``{"\\ud800": 1}``: JSON, not UTF-8) and blamed
        the whole object without saying why. No field has such a name, so it is renamed to its escape
        (``\\ud800``) and reported as any unknown field is, by name."""
        if isinstance(data, dict) and not all(name.isascii() for name in data if isinstance(name, str)):
            return {
                name.encode("utf-8", "backslashreplace").decode() if isinstance(name, str) else name: value
                for name, value in data.items()
            }
        return data


class PublishIn(InputModel):
    """One notification: exactly one of ``recipient``, ``recipients``, ``topic`` or ``broadcast: true``."""

    # The target rule (``_one_target``) in the OpenAPI document: exactly one of the four, not null.
    model_config = ConfigDict(
        json_schema_extra={
            "oneOf": [
                {"required": [name], "properties": {name: {"not": {"type": "null"}}}}
                for name in ("recipient", "recipients", "topic", "broadcast")
            ]
        }
    )

    recipient: TargetId | None = None
    recipients: Annotated[list[TargetId], Field(min_length=1, max_length=v.MAX_RECIPIENTS)] | None = None
    topic: TargetId | None = None
    broadcast: StrictBool | None = Field(
        default=None, description="Only `true` is accepted.", json_schema_extra={"enum": [True, None]}
    )
    event: EventName | None = None
    data: Any = None
    ttl: PublishTtl | None = None

    @field_validator("data")
    @classmethod
    def _check_data(cls, value: Any) -> Any:
        """Only what ``jsonb`` stores: no NUL, no lone surrogate, finite numbers (see service.jsonbody)."""
        found = jsonbody.storage_problem(value)
        if found is not None:
            path, problem = found
            raise PydanticCustomError(
                "invalid_field", f"at {path.lstrip('.')}: {problem}" if path else problem
            )
        return value

    @field_validator("recipients")
    @classmethod
    def _check_recipients(cls, value: list[str] | None) -> list[str] | None:
        if value is None:
            return None
        if not 1 <= len(value) <= v.MAX_RECIPIENTS:
            raise PydanticCustomError("invalid_field", f"must hold 1-{v.MAX_RECIPIENTS} recipient ids")
        return list(dict.fromkeys(value))  # duplicates are stored once, first occurrence order

    @field_validator("event")
    @classmethod
    def _check_event(cls, value: str | None) -> str | None:
        if value is not None and (problem := v.event_problem(value)):
            raise PydanticCustomError("invalid_field", problem)
        return value

    @model_validator(mode="after")
    def _one_target(self) -> PublishIn:
        targets = [
            self.recipient is not None,
            self.recipients is not None,
            self.topic is not None,
            self.broadcast is not None,
        ]
        if sum(targets) != 1 or self.broadcast is False:
            raise PydanticCustomError(
                "missing_target",
                "exactly one of recipient, recipients, topic or broadcast: true is required",
            )
        return self


class BatchIn(InputModel):
    notifications: Annotated[list[PublishIn], Field(min_length=1, max_length=v.MAX_BATCH)]


class PublishBody(BaseModel):
    """The body of ``POST /v1/notifications`` as ninja validates it (its view argument is ``payload``); the
    lean publish route validates with it so that both give the same errors (``service.api.validated_payload``)."""

    payload: PublishIn


class BatchBody(BaseModel):
    """The body of ``POST /v1/notifications/batch``, as ``PublishBody``."""

    payload: BatchIn


class StoredOut(Schema):
    id: str
    recipient: str | None
    topic: str | None = None
    broadcast: bool = False
    created_at: str


class PublishOut(Schema):
    notifications: list[StoredOut]


class TokenIn(InputModel):
    recipient: TargetId
    topics: Annotated[list[TargetId], Field(max_length=100)] = Field(default_factory=list)
    ttl: TokenTtl = 3600

    @field_validator("topics")
    @classmethod
    def _check_topics(cls, value: list[str]) -> list[str]:
        if len(value) > 100:
            raise PydanticCustomError("invalid_field", "at most 100 topics")
        return list(dict.fromkeys(value))


class TokenOut(Schema):
    token: str
    expires_at: str


class NotificationOut(Schema):
    id: str
    event: str | None
    data: Any
    recipient: str | None
    topic: str | None
    broadcast: bool
    created_at: str
    expires_at: str
    read_at: str | None


class InboxOut(Schema):
    notifications: list[NotificationOut]
    next: str | None = Field(
        description="Pass as `before` to get the next (older) page; null on the last page."
    )


class UnreadCountOut(Schema):
    unread: int


class ReadAllOut(Schema):
    updated: int
    unread: int


class ErrorDetail(Schema):
    code: str
    message: str
    field: str | None = None


class ErrorOut(Schema):
    error: ErrorDetail

"""Catalog's request and response bodies, and their exact JSON rendering.

Money is a Decimal from the database to the wire: ``to_json`` writes it as a JSON number with
exactly its digits (``1280``, ``99.5``), never through a float (``platform/contract.py``).
"""

from __future__ import annotations

import datetime as dt
import zoneinfo
from datetime import datetime
from decimal import Decimal
from typing import Annotated, Any, ClassVar, Self

import orjson
from pydantic import (
    AfterValidator,
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    GetJsonSchemaHandler,
    StringConstraints,
    WithJsonSchema,
    model_validator,
)
from pydantic.json_schema import JsonSchemaValue
from pydantic_core import CoreSchema

from marquee.catalog.domain import (
    DEFAULT_CURRENCY,
    DEFAULT_TIMEZONE,
    ShowStatus,
    money_text,
    zone,
)
from marquee.platform.contract import NUMBER_ONLY, Money, MoneyIn, not_null


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return orjson.Fragment(money_text(value))
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


def to_json(model: BaseModel) -> bytes:
    """The model as JSON: exact money, UTC times ending in ``Z``, non-ASCII text as UTF-8."""
    return orjson.dumps(
        model.model_dump(mode="python"), default=_json_default, option=orjson.OPT_UTC_Z
    )


# Required text: trimmed, and not blank (the pattern says so in the schema: some non-space).
def _text(max_length: int) -> Any:
    return StringConstraints(
        strip_whitespace=True, min_length=1, max_length=max_length, pattern=r"\S"
    )


Text = Annotated[str, _text(200)]
City = Annotated[str, _text(64)]
Category = Annotated[str, _text(32)]
AreaName = Annotated[str, _text(100)]
Address = Annotated[str, StringConstraints(strip_whitespace=True, max_length=500)]
Description = Annotated[str, StringConstraints(strip_whitespace=True, max_length=20_000)]
Identifier = Annotated[
    str, StringConstraints(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:\-]+$")
]
# Every zone this machine knows (the schema lists them, so a client can tell a valid one).
TIME_ZONES = sorted(zoneinfo.available_timezones() | {"Asia/Shanghai", "UTC"})


def _known_zone(name: str) -> str:
    zone(name)
    return name


TimeZoneName = Annotated[
    str,
    AfterValidator(_known_zone),
    WithJsonSchema({"type": "string", "enum": TIME_ZONES, "examples": ["Asia/Shanghai"]}),
]
Price = MoneyIn
Currency = Annotated[str, StringConstraints(pattern=r"^[A-Z]{3}$")]
Capacity = Annotated[int, Field(ge=0, le=1_000_000), NUMBER_ONLY]
PerUserLimit = Annotated[int, Field(ge=1, le=100), NUMBER_ONLY]


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Patch(_Request):
    """A partial update: only the fields sent change; ``NOT_NULL`` fields cannot be cleared
    (their schema says so: the plain type, no null)."""

    NOT_NULL: ClassVar[tuple[str, ...]] = ()

    @classmethod
    def __get_pydantic_json_schema__(
        cls, core_schema: CoreSchema, handler: GetJsonSchemaHandler
    ) -> JsonSchemaValue:
        schema = handler.resolve_ref_schema(handler(core_schema))
        not_null(*cls.NOT_NULL)(schema)
        return schema

    @model_validator(mode="after")
    def _no_null_for_required(self) -> Self:
        for name in self.NOT_NULL:
            if name in self.model_fields_set and getattr(self, name) is None:
                raise ValueError(f"{name} cannot be null")
        return self

    def changes(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.model_fields_set}


# -- venues ------------------------------------------------------------------------------


class VenueCreate(_Request):
    name: Text
    city: City
    address: Address = ""
    timezone: TimeZoneName = DEFAULT_TIMEZONE


class VenuePatch(_Patch):
    NOT_NULL = ("name", "city", "address", "timezone")
    name: Text | None = None
    city: City | None = None
    address: Address | None = None
    timezone: TimeZoneName | None = None


class VenueOut(BaseModel):
    venue_id: str
    name: str
    city: str
    address: str
    timezone: str
    created_at: datetime
    updated_at: datetime


class VenuePage(BaseModel):
    venues: list[VenueOut]
    page: int
    page_size: int
    total: int


# -- shows -------------------------------------------------------------------------------


class _ShowFields(_Request):
    title: Text
    category: Category
    description: Description = ""
    status: ShowStatus = "draft"


class ShowAtVenue(_ShowFields):
    """A show at a venue named by its ID."""

    venue_id: Identifier


class ShowAtNamedVenue(_ShowFields):
    """A show at the venue of this name in this city, found or created on the spot."""

    venue: Text
    city: City


ShowCreate = ShowAtVenue | ShowAtNamedVenue
"""A show at a venue: name it by ``venue_id``, or by ``venue`` and ``city``; not both."""


class ShowPatch(_Patch):
    """Change a show's own fields."""

    NOT_NULL = ("title", "category", "description", "status")
    title: Text | None = None
    category: Category | None = None
    description: Description | None = None
    status: ShowStatus | None = None


class ShowPatchVenueById(ShowPatch):
    """Change a show's fields and move it to the venue with this ID."""

    venue_id: Identifier


class ShowPatchVenueByName(ShowPatch):
    """Change a show's fields and move it to the venue of this name in this city."""

    venue: Text
    city: City


ShowChange = ShowPatch | ShowPatchVenueById | ShowPatchVenueByName
"""A partial update of a show: its own fields, and at most one way of naming a new venue."""


class ShowSummary(BaseModel):
    show_id: str
    title: str
    venue: str
    date: dt.date | None = Field(description="The first session's date at the venue.")
    city: str
    category: str
    status: ShowStatus
    venue_id: str
    first_session_at: datetime | None
    last_session_at: datetime | None


class ShowPage(BaseModel):
    shows: list[ShowSummary]
    page: int
    page_size: int
    total: int


class SessionBrief(BaseModel):
    session_id: str
    date: str = Field(description="Local start at the venue, e.g. 2026-08-15 19:30.")
    starts_at: datetime
    ends_at: datetime


class ShowDetail(ShowSummary):
    description: str
    address: str
    timezone: str
    sessions: list[SessionBrief]


class AdminShow(ShowSummary):
    description: str
    created_at: datetime
    updated_at: datetime


class AdminShowPage(BaseModel):
    shows: list[AdminShow]
    page: int
    page_size: int
    total: int


# -- sessions and seat areas -------------------------------------------------------------


class SessionCreate(_Request):
    """A session; ``ends_at`` after ``starts_at``, and the sale window, when given, inside
    the session's (opening before it ends, closing at the latest when it ends)."""

    starts_at: AwareDatetime
    ends_at: AwareDatetime
    sale_starts_at: AwareDatetime | None = None
    sale_ends_at: AwareDatetime | None = None
    per_user_limit: PerUserLimit = 4


class SessionPatch(_Patch):
    NOT_NULL = ("starts_at", "ends_at", "per_user_limit")
    starts_at: AwareDatetime | None = None
    ends_at: AwareDatetime | None = None
    sale_starts_at: AwareDatetime | None = None
    sale_ends_at: AwareDatetime | None = None
    per_user_limit: PerUserLimit | None = None


class SeatAreaCreate(_Request):
    name: AreaName
    price: Price
    currency: Currency = DEFAULT_CURRENCY
    capacity: Capacity


class SeatAreaPatch(_Patch):
    NOT_NULL = ("name", "price", "currency", "capacity")
    name: AreaName | None = None
    price: Price | None = None
    currency: Currency | None = None
    capacity: Capacity | None = None


class SeatAreaView(BaseModel):
    area_id: str
    name: str
    price: Money
    currency: str
    available: int


class SessionView(BaseModel):
    session_id: str
    date: str = Field(description="Local start at the venue, e.g. 2026-08-15 19:30.")
    starts_at: datetime
    ends_at: datetime
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    on_sale: bool
    per_user_limit: int
    seat_areas: list[SeatAreaView]


class SessionList(BaseModel):
    show_id: str
    sessions: list[SessionView]


class SessionAvailability(BaseModel):
    session_id: str
    show_id: str
    date: str
    starts_at: datetime
    on_sale: bool
    available: int
    seat_areas: list[SeatAreaView]


class AdminSession(BaseModel):
    session_id: str
    show_id: str
    date: str
    starts_at: datetime
    ends_at: datetime
    sale_starts_at: datetime | None
    sale_ends_at: datetime | None
    per_user_limit: int
    on_sale: bool
    created_at: datetime
    updated_at: datetime


class AdminSessionList(BaseModel):
    sessions: list[AdminSession]


class AdminSeatArea(BaseModel):
    area_id: str
    session_id: str
    name: str
    price: Money
    currency: str
    capacity: int
    reserved: int
    sold: int
    available: int
    version: int
    created_at: datetime
    updated_at: datetime


class AdminSeatAreaList(BaseModel):
    seat_areas: list[AdminSeatArea]


# -- inventory (internal) ----------------------------------------------------------------


class ReserveRequest(_Request):
    reservation_id: Identifier
    session_id: Identifier
    area_id: Identifier
    quantity: Annotated[int, Field(ge=1, le=10_000)]
    expires_at: AwareDatetime


MAX_BATCH = 1000


class ReserveBatchRequest(_Request):
    reservations: Annotated[list[ReserveRequest], Field(min_length=1, max_length=MAX_BATCH)]

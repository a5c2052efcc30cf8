"""Catalog's HTTP routes: public browsing, the admin API, and Booking's internal inventory API.

Routes parse, call one use case and render; business errors become problem details through
the single table ``ERRORS`` below.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from pydantic import BeforeValidator
from starlette.responses import Response

from marquee.catalog import repository as repo
from marquee.catalog.client import Availability, HoldAnswer, HoldBatch, HoldRequest
from marquee.catalog.client import Reservation as ReservationOut
from marquee.catalog.domain import (
    SHOW_STATUSES,
    CapacityBelowTakenError,
    CatalogError,
    DuplicateError,
    InsufficientInventoryError,
    InvalidInputError,
    NotFoundError,
    NotOnSaleError,
    ReservationConflictError,
    ReservationReleasedError,
    ScheduleConflictError,
    ShowStatus,
)
from marquee.catalog.schemas import (
    AdminSeatArea,
    AdminSeatAreaList,
    AdminSession,
    AdminSessionList,
    AdminShow,
    AdminShowPage,
    ReserveBatchRequest,
    ReserveRequest,
    SeatAreaCreate,
    SeatAreaPatch,
    SessionAvailability,
    SessionCreate,
    SessionList,
    SessionPatch,
    ShowChange,
    ShowCreate,
    ShowDetail,
    ShowPage,
    VenueCreate,
    VenueOut,
    VenuePage,
    VenuePatch,
    to_json,
)
from marquee.catalog.service import CatalogService
from marquee.platform.auth import current_admin
from marquee.platform.contract import errors
from marquee.platform.problems import problem_body, problem_response

JSON = "application/json"
MAX_PAGE_SIZE = 100
DEFAULT_PAGE_SIZE = 20


async def _catalog(request: Request) -> CatalogService:
    service: CatalogService = request.app.state.catalog
    return service


Catalog = Annotated[CatalogService, Depends(_catalog)]
Page = Annotated[int, Query(ge=1, le=1_000_000, description="1-based page number.")]
PageSize = Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)]
CityQuery = Annotated[str | None, Query(max_length=64)]
CategoryQuery = Annotated[str | None, Query(max_length=32)]
SearchQuery = Annotated[str | None, Query(max_length=100, description="In title or venue.")]


def _iso_date(value: object) -> object:
    # Lax parsing would read "0" as 1970-01-01 (a Unix time); a date is written YYYY-MM-DD.
    if isinstance(value, str) and not _ISO_DATE.fullmatch(value):
        raise ValueError("must be a date written YYYY-MM-DD")
    return value


_ISO_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
DateQuery = Annotated[
    dt.date | None,
    BeforeValidator(_iso_date),
    Query(description="A local date, YYYY-MM-DD."),
]


def render(body: Any, status: int = 200) -> Response:
    """A JSON response; ``body`` is a model (money rendered exactly) or ready JSON bytes."""
    payload = body if isinstance(body, bytes) else to_json(body)
    return Response(payload, status_code=status, media_type=JSON)


# -- errors: the one table -----------------------------------------------------------------

ErrorRule = tuple[int, str, Callable[[Any], dict[str, Any]]]


def _nothing(_: Any) -> dict[str, Any]:
    return {}


ERRORS: dict[type[CatalogError], ErrorRule] = {
    NotFoundError: (404, "not_found", _nothing),
    ScheduleConflictError: (
        409,
        "schedule_conflict",
        lambda e: {"errors": [{"loc": [e.field], "msg": e.message, "type": "value_error"}]},
    ),
    InvalidInputError: (
        422,
        "validation_error",
        lambda e: {"errors": [{"loc": [e.field], "msg": e.message, "type": "value_error"}]},
    ),
    DuplicateError: (409, "already_exists", lambda e: {"existing_id": e.existing_id}),
    InsufficientInventoryError: (
        409,
        "insufficient_inventory",
        lambda e: {"available": e.available, "requested": e.requested},
    ),
    NotOnSaleError: (409, "not_on_sale", lambda e: {"session_id": e.session_id}),
    ReservationReleasedError: (409, "reservation_released", lambda e: {"reason": e.reason}),
    ReservationConflictError: (409, "reservation_conflict", _nothing),
    CapacityBelowTakenError: (
        409,
        "capacity_below_taken",
        lambda e: {
            "capacity": e.capacity,
            "reserved": e.reserved,
            "sold": e.sold,
            "taken": e.reserved + e.sold,
        },
    ),
}


def _rule(exc: CatalogError) -> ErrorRule:
    return next(rule for kind, rule in ERRORS.items() if isinstance(exc, kind))


def install_error_table(app: FastAPI) -> None:
    async def on_catalog_error(request: Request, exc: Exception) -> Response:
        assert isinstance(exc, CatalogError)
        status, code, extra = _rule(exc)
        return problem_response(status, code, str(exc), **extra(exc))

    app.add_exception_handler(CatalogError, on_catalog_error)


# -- public ----------------------------------------------------------------------------------

public = APIRouter(tags=["catalog"])


@public.get("/api/v1/shows", response_model=ShowPage)
async def list_shows(
    catalog: Catalog,
    city: CityQuery = None,
    category: CategoryQuery = None,
    q: SearchQuery = None,
    date_from: DateQuery = None,
    date_to: DateQuery = None,
    page: Page = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> Response:
    """Shows on sale or off sale (never drafts), soonest first; filters combine with AND."""
    return render(
        await catalog.browse_shows(
            city=city or None,
            category=category or None,
            q=q.strip() if q and q.strip() else None,
            date_from=date_from,
            date_to=date_to,
            page=page,
            page_size=page_size,
        )
    )


@public.get("/api/v1/shows/{show_id}", response_model=ShowDetail, responses=errors(404))
async def get_show(catalog: Catalog, show_id: str) -> Response:
    return render(await catalog.show_detail(show_id))


@public.get("/api/v1/shows/{show_id}/sessions", response_model=SessionList, responses=errors(404))
async def list_show_sessions(catalog: Catalog, show_id: str) -> Response:
    return render(await catalog.show_sessions(show_id))


@public.get(
    "/api/v1/sessions/{session_id}/availability",
    response_model=SessionAvailability,
    responses=errors(404),
)
async def session_availability(catalog: Catalog, session_id: str) -> Response:
    return render(await catalog.session_availability(session_id))


@public.get("/api/v1/venues", response_model=VenuePage)
async def list_venues(
    catalog: Catalog,
    city: CityQuery = None,
    page: Page = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> Response:
    return render(await catalog.list_venues(city=city or None, page=page, page_size=page_size))


@public.get("/api/v1/venues/{venue_id}", response_model=VenueOut, responses=errors(404))
async def get_venue(catalog: Catalog, venue_id: str) -> Response:
    return render(await catalog.get_venue(venue_id))


# -- admin -----------------------------------------------------------------------------------

admin = APIRouter(
    prefix="/api/v1/admin",
    tags=["catalog admin"],
    dependencies=[Depends(current_admin)],
    responses=errors(401, 403),
)


@admin.post("/venues", status_code=201, response_model=VenueOut, responses=errors(409))
async def create_venue(catalog: Catalog, body: VenueCreate) -> Response:
    return render(await catalog.create_venue(**body.model_dump()), 201)


@admin.get("/venues", response_model=VenuePage)
async def admin_list_venues(
    catalog: Catalog,
    city: CityQuery = None,
    page: Page = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> Response:
    return render(await catalog.list_venues(city=city or None, page=page, page_size=page_size))


@admin.get("/venues/{venue_id}", response_model=VenueOut, responses=errors(404))
async def admin_get_venue(catalog: Catalog, venue_id: str) -> Response:
    return render(await catalog.get_venue(venue_id))


@admin.patch("/venues/{venue_id}", response_model=VenueOut, responses=errors(404, 409))
async def update_venue(catalog: Catalog, venue_id: str, body: VenuePatch) -> Response:
    return render(await catalog.update_venue(venue_id, body.changes()))


@admin.post("/shows", status_code=201, response_model=AdminShow, responses=errors(404, 409))
async def create_show(catalog: Catalog, body: ShowCreate) -> Response:
    return render(await catalog.create_show(**body.model_dump()), 201)


@admin.get("/shows", response_model=AdminShowPage)
async def admin_list_shows(
    catalog: Catalog,
    status: Annotated[ShowStatus | None, Query()] = None,
    city: CityQuery = None,
    category: CategoryQuery = None,
    q: SearchQuery = None,
    page: Page = 1,
    page_size: PageSize = DEFAULT_PAGE_SIZE,
) -> Response:
    """Every show, drafts included, in the public order; ``status`` narrows it."""
    flt = repo.ShowFilter(
        statuses=(status,) if status else SHOW_STATUSES,
        city=city or None,
        category=category or None,
        q=q.strip() if q and q.strip() else None,
    )
    return render(await catalog.list_shows_admin(flt, page=page, page_size=page_size))


@admin.get("/shows/{show_id}", response_model=AdminShow, responses=errors(404))
async def admin_get_show(catalog: Catalog, show_id: str) -> Response:
    return render(await catalog.get_show_admin(show_id))


@admin.patch("/shows/{show_id}", response_model=AdminShow, responses=errors(404, 409))
async def update_show(catalog: Catalog, show_id: str, body: ShowChange) -> Response:
    return render(await catalog.update_show(show_id, body.changes()))


@admin.post(
    "/shows/{show_id}/sessions",
    status_code=201,
    response_model=AdminSession,
    responses=errors(404, 409),
)
async def create_session(catalog: Catalog, show_id: str, body: SessionCreate) -> Response:
    return render(await catalog.create_session(show_id, **body.model_dump()), 201)


@admin.get("/shows/{show_id}/sessions", response_model=AdminSessionList, responses=errors(404))
async def admin_list_sessions(catalog: Catalog, show_id: str) -> Response:
    return render(AdminSessionList(sessions=await catalog.list_sessions_admin(show_id)))


@admin.get("/sessions/{session_id}", response_model=AdminSession, responses=errors(404))
async def admin_get_session(catalog: Catalog, session_id: str) -> Response:
    return render(await catalog.get_session_admin(session_id))


@admin.patch("/sessions/{session_id}", response_model=AdminSession, responses=errors(404, 409))
async def update_session(catalog: Catalog, session_id: str, body: SessionPatch) -> Response:
    return render(await catalog.update_session(session_id, body.changes()))


@admin.post(
    "/sessions/{session_id}/seat-areas",
    status_code=201,
    response_model=AdminSeatArea,
    responses=errors(404, 409),
)
async def create_seat_area(catalog: Catalog, session_id: str, body: SeatAreaCreate) -> Response:
    return render(await catalog.create_area(session_id, **body.model_dump()), 201)


@admin.get(
    "/sessions/{session_id}/seat-areas", response_model=AdminSeatAreaList, responses=errors(404)
)
async def admin_list_seat_areas(catalog: Catalog, session_id: str) -> Response:
    return render(AdminSeatAreaList(seat_areas=await catalog.list_areas_admin(session_id)))


@admin.get("/seat-areas/{area_id}", response_model=AdminSeatArea, responses=errors(404))
async def admin_get_seat_area(catalog: Catalog, area_id: str) -> Response:
    return render(await catalog.get_area_admin(area_id))


@admin.patch("/seat-areas/{area_id}", response_model=AdminSeatArea, responses=errors(404, 409))
async def update_seat_area(catalog: Catalog, area_id: str, body: SeatAreaPatch) -> Response:
    """Capacity can never drop below what is reserved plus sold (409 with the counts)."""
    return render(await catalog.update_area(area_id, body.changes()))


# -- internal (Booking; never routed by the gateway) -----------------------------------------

internal = APIRouter(prefix="/internal", tags=["inventory"], include_in_schema=False)


@internal.get("/inventory/{session_id}/{area_id}", response_model=Availability)
async def check_availability(catalog: Catalog, session_id: str, area_id: str) -> Response:
    return render(await catalog.check_availability(session_id, area_id))


@internal.post("/reservations", response_model=ReservationOut)
async def reserve_seats(catalog: Catalog, body: ReserveRequest) -> Response:
    """201 with a new hold; 200 with the same hold when the request is replayed."""
    reservation, created = await catalog.reserve(**body.model_dump())
    return render(reservation, 201 if created else 200)


@internal.post("/reservations/batch", response_model=HoldBatch)
async def reserve_seats_batch(catalog: Catalog, body: ReserveBatchRequest) -> Response:
    """Many holds in one transaction; one answer per hold, in order, each what
    ``POST /internal/reservations`` would have answered it alone (200 for the batch)."""
    outcomes = await catalog.reserve_many(
        [HoldRequest(**request.model_dump()) for request in body.reservations]
    )
    answers = []
    for request, outcome in zip(body.reservations, outcomes, strict=True):
        if isinstance(outcome, CatalogError):
            status, code, extra = _rule(outcome)
            answers.append(
                HoldAnswer(
                    reservation_id=request.reservation_id,
                    status=status,
                    problem=problem_body(status, code, str(outcome), **extra(outcome)),
                )
            )
        else:
            reservation, created = outcome
            answers.append(
                HoldAnswer(
                    reservation_id=request.reservation_id,
                    status=201 if created else 200,
                    reservation=reservation,
                )
            )
    return render(HoldBatch(answers=answers))


@internal.post("/reservations/{reservation_id}/confirm", response_model=ReservationOut)
async def confirm_reservation(catalog: Catalog, reservation_id: str) -> Response:
    return render(await catalog.confirm(reservation_id))


@internal.post("/reservations/{reservation_id}/release", response_model=ReservationOut)
async def release_reservation(catalog: Catalog, reservation_id: str) -> Response:
    return render(await catalog.release(reservation_id))


ROUTERS = (public, admin, internal)

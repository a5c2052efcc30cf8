"""Browsing and administering the catalog through the gateway (seed flow 2, scenario 1 steps
2–3), as a person's client and an admin's tools do."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Any
from urllib.parse import quote, urlencode
from zoneinfo import ZoneInfo

import pytest

from marquee.catalog.client import CatalogClient
from marquee.gateway.app import Gateway
from marquee.platform.auth import TokenService
from marquee.platform.settings import Settings
from marquee.platform.transport import Response
from tests.e2e.conftest import Api

SHANGHAI = ZoneInfo("Asia/Shanghai")


def ok(answer: Response, status: int = 200) -> Any:
    assert answer.status == status, answer.json()
    assert answer.header("content-type") == "application/json"
    return answer.json()


def problem(answer: Response, status: int, code: str) -> dict[str, Any]:
    body: dict[str, Any] = answer.json()
    assert (answer.status, body.get("code")) == (status, code), body
    assert answer.header("content-type") == "application/problem+json"
    return body


def evening(days: int, hour: int = 19, minute: int = 30) -> datetime:
    """A start ``days`` from today at a Shanghai wall-clock time."""
    day = datetime.now(SHANGHAI).date() + timedelta(days=days)
    return datetime.combine(day, time(hour, minute), tzinfo=SHANGHAI)


@pytest.fixture
def tokens(e2e_settings: Settings) -> TokenService:
    return TokenService(e2e_settings.resolved_jwt_secret())


@pytest.fixture
def admin(tokens: TokenService) -> str:
    return tokens.issue_access("admin-1", "admin", "admin@marquee.test")


@pytest.fixture
def customer(tokens: TokenService) -> str:
    return tokens.issue_access("alice-1", "customer", "alice@example.com")


@dataclass
class Catalog:
    """What ``catalog`` put in place through the admin API."""

    concert: str  # 上海 演唱会, on sale, two areas
    concert_session: str
    vip: str
    teahouse: str  # 北京 话剧, on sale, two sessions 10 and 11 days out
    musical: str  # 上海 音乐剧, off sale
    draft: str  # 上海 演唱会, a draft: never public
    football: str  # 广州 体育, on sale, no sessions yet
    shanghai_stadium: str


async def create(api: Api, admin: str, path: str, body: dict[str, Any]) -> dict[str, Any]:
    created: dict[str, Any] = ok(await api.post(path, json=body, token=admin), 201)
    return created


async def add_show(
    api: Api, admin: str, show: dict[str, Any], starts: list[datetime]
) -> tuple[str, list[str]]:
    show_id = (await create(api, admin, "/api/v1/admin/shows", show))["show_id"]
    sessions = []
    for start in starts:
        session = await create(
            api,
            admin,
            f"/api/v1/admin/shows/{show_id}/sessions",
            {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=3)).isoformat()},
        )
        sessions.append(session["session_id"])
    return show_id, sessions


@pytest.fixture
async def catalog(api: Api, admin: str) -> Catalog:
    stadium = await create(
        api,
        admin,
        "/api/v1/admin/venues",
        {"name": "上海体育场", "city": "上海", "address": "上海市徐汇区天钥桥路666号"},
    )
    theatre = await create(api, admin, "/api/v1/admin/venues", {"name": "首都剧场", "city": "北京"})
    concert, (concert_session,) = await add_show(
        api,
        admin,
        {
            "title": "周杰伦 2026 世界巡回演唱会",
            "category": "演唱会",
            "venue_id": stadium["venue_id"],
            "description": "上海站",
            "status": "on_sale",
        },
        [evening(30)],
    )
    vip = await create(
        api,
        admin,
        f"/api/v1/admin/sessions/{concert_session}/seat-areas",
        {"name": "VIP A区", "price": 1280, "capacity": 45},
    )
    await create(
        api,
        admin,
        f"/api/v1/admin/sessions/{concert_session}/seat-areas",
        {"name": "学生票", "price": 99.50, "capacity": 100},
    )
    teahouse, _ = await add_show(
        api,
        admin,
        {
            "title": "话剧《茶馆》",
            "category": "话剧",
            "venue_id": theatre["venue_id"],
            "status": "on_sale",
        },
        [evening(10), evening(11)],
    )
    musical, _ = await add_show(
        api,
        admin,
        {
            "title": "音乐剧《剧院魅影》",
            "category": "音乐剧",
            "venue_id": stadium["venue_id"],
            "status": "off_sale",
        },
        [evening(60)],
    )
    draft, _ = await add_show(
        api,
        admin,
        {"title": "未公布的演唱会", "category": "演唱会", "venue_id": stadium["venue_id"]},
        [evening(20)],
    )
    football, _ = await add_show(
        api,
        admin,
        {
            "title": "中超联赛 广州队 vs 上海申花",
            "category": "体育",
            "venue": "天河体育场",
            "city": "广州",
            "status": "on_sale",
        },
        [],
    )
    return Catalog(
        concert,
        concert_session,
        vip["area_id"],
        teahouse,
        musical,
        draft,
        football,
        stadium["venue_id"],
    )


async def show_ids(api: Api, query: str) -> list[str]:
    page = ok(await api.get(f"/api/v1/shows?{query}"))
    return [show["show_id"] for show in page["shows"]]


# -- browsing -------------------------------------------------------------------------------


async def test_browsing_shanghai_concerts_finds_the_seeds_show(api: Api, catalog: Catalog) -> None:
    query = urlencode({"city": "上海", "category": "演唱会"})
    page = ok(await api.get(f"/api/v1/shows?{query}"))
    assert (page["page"], page["page_size"], page["total"]) == (1, 20, 1)
    (show,) = page["shows"]
    assert {k: show[k] for k in ("show_id", "title", "venue", "date")} == {
        "show_id": catalog.concert,
        "title": "周杰伦 2026 世界巡回演唱会",
        "venue": "上海体育场",
        "date": evening(30).date().isoformat(),
    }
    assert (show["city"], show["category"], show["status"]) == ("上海", "演唱会", "on_sale")


async def test_chinese_in_the_query_works_typed_raw_as_well_as_percent_encoded(
    api: Api, catalog: Catalog
) -> None:
    encoded = await show_ids(api, f"city={quote('上海')}&category={quote('演唱会')}")
    # What an HTTP server hands over for `curl '.../shows?city=上海'`: the UTF-8 bytes as they
    # came (the transport carries query bytes as Latin-1 text, one character per byte).
    raw = "city=上海&category=演唱会".encode().decode("latin-1")
    assert await show_ids(api, raw) == encoded == [catalog.concert]


async def test_drafts_are_never_listed_and_off_sale_shows_are(api: Api, catalog: Catalog) -> None:
    listed = await show_ids(api, "page_size=100")
    assert catalog.draft not in listed
    assert catalog.musical in listed
    assert (await api.get(f"/api/v1/shows/{catalog.musical}")).json()["status"] == "off_sale"


async def test_shows_are_listed_soonest_first_with_unscheduled_ones_last(
    api: Api, catalog: Catalog
) -> None:
    assert await show_ids(api, "") == [
        catalog.teahouse,
        catalog.concert,
        catalog.musical,
        catalog.football,
    ]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"category": "话剧"}, ["teahouse"]),
        ({"city": "广州"}, ["football"]),
        ({"city": "上海"}, ["concert", "musical"]),
        ({"q": "茶馆"}, ["teahouse"]),
        ({"q": "首都"}, ["teahouse"]),  # the venue's name
        ({"q": "上海"}, ["concert", "musical", "football"]),  # a venue, and a title
        ({"q": "100%"}, []),
        ({"q": "无此演出"}, []),
        ({"city": "上海", "category": "话剧"}, []),
        ({"city": "深圳"}, []),
    ],
)
async def test_filters_narrow_the_listing(
    api: Api, catalog: Catalog, query: dict[str, str], expected: list[str]
) -> None:
    assert await show_ids(api, urlencode(query)) == [getattr(catalog, name) for name in expected]


async def test_a_date_range_finds_shows_with_a_session_on_those_local_days(
    api: Api, catalog: Catalog
) -> None:
    def days(a: int, b: int) -> str:
        return urlencode(
            {"date_from": evening(a).date().isoformat(), "date_to": evening(b).date().isoformat()}
        )

    assert await show_ids(api, days(10, 10)) == [catalog.teahouse]
    assert await show_ids(api, days(11, 30)) == [catalog.teahouse, catalog.concert]
    assert await show_ids(api, days(12, 29)) == []
    since = urlencode({"date_from": evening(31).date().isoformat()})
    assert await show_ids(api, since) == [catalog.musical]
    until = urlencode({"date_to": evening(10).date().isoformat()})
    assert await show_ids(api, until) == [catalog.teahouse]


async def test_pages_cover_every_show_once_and_report_the_total(api: Api, catalog: Catalog) -> None:
    everything = await show_ids(api, "page_size=100")
    pages = [ok(await api.get(f"/api/v1/shows?page_size=3&page={n}")) for n in (1, 2, 3)]
    assert [p["total"] for p in pages] == [4, 4, 4]
    assert [len(p["shows"]) for p in pages] == [3, 1, 0]
    assert [s["show_id"] for p in pages for s in p["shows"]] == everything


@pytest.mark.parametrize(
    "query",
    [
        "page=0",
        "page=-1",
        "page=one",
        "page_size=0",
        "page_size=101",
        "date_from=2026-13-01",
        "date_to=tomorrow",
        f"q={'x' * 101}",
    ],
)
async def test_bad_listing_parameters_are_422_problems(api: Api, query: str) -> None:
    problem(await api.get(f"/api/v1/shows?{query}"), 422, "validation_error")


async def test_a_date_range_that_ends_before_it_starts_lists_nothing(api: Api) -> None:
    listing = ok(await api.get("/api/v1/shows?date_from=2026-08-16&date_to=2026-08-15"))
    assert (listing["shows"], listing["total"]) == ([], 0)


async def test_a_show_at_an_unknown_venue_is_not_found(api: Api, admin: str) -> None:
    body = {"title": "x", "category": "演唱会", "venue_id": "venue-nope"}
    answer = await api.post("/api/v1/admin/shows", json=body, token=admin)
    problem(answer, 404, "not_found")


async def test_a_show_has_details_and_session_times_as_the_venue_tells_them(
    api: Api, catalog: Catalog
) -> None:
    show = ok(await api.get(f"/api/v1/shows/{catalog.teahouse}"))
    assert (show["title"], show["venue"], show["city"]) == ("话剧《茶馆》", "首都剧场", "北京")
    assert [s["date"] for s in show["sessions"]] == [
        evening(10).strftime("%Y-%m-%d 19:30"),
        evening(11).strftime("%Y-%m-%d 19:30"),
    ]
    assert show["sessions"][0]["starts_at"] == evening(10).astimezone(UTC).strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )


async def test_a_shows_sessions_list_seat_areas_with_exact_prices_and_availability(
    api: Api, catalog: Catalog
) -> None:
    body = ok(await api.get(f"/api/v1/shows/{catalog.concert}/sessions"))
    (session,) = body["sessions"]
    assert session["session_id"] == catalog.concert_session
    assert session["date"] == evening(30).strftime("%Y-%m-%d 19:30")
    assert session["on_sale"] is True
    assert session["seat_areas"] == [
        {
            "area_id": catalog.vip,
            "name": "VIP A区",
            "price": 1280,
            "currency": "CNY",
            "available": 45,
        },
        {
            "area_id": session["seat_areas"][1]["area_id"],
            "name": "学生票",
            "price": 99.5,
            "currency": "CNY",
            "available": 100,
        },
    ]
    answer = await api.get(f"/api/v1/shows/{catalog.concert}/sessions")
    assert b'"price":1280,' in answer.body
    assert b'"price":99.5,' in answer.body


async def test_availability_is_live_while_listings_are_cached(api: Api, catalog: Catalog) -> None:
    gateway = api.transport.app
    assert isinstance(gateway, Gateway)
    booking_view = CatalogClient(gateway.upstreams["catalog"])
    path = f"/api/v1/sessions/{catalog.concert_session}/availability"
    before = ok(await api.get(path))
    assert (before["show_id"], before["available"], before["on_sale"]) == (
        catalog.concert,
        145,
        True,
    )

    await booking_view.reserve(
        "order-1", catalog.concert_session, catalog.vip, 2, datetime.now(UTC) + timedelta(hours=1)
    )

    after = ok(await api.get(path))
    assert after["available"] == 143
    assert after["seat_areas"][0] == {**before["seat_areas"][0], "available": 43}
    sessions = ok(await api.get(f"/api/v1/shows/{catalog.concert}/sessions"))
    assert sessions["sessions"][0]["seat_areas"][0]["available"] == 43


async def test_unknown_and_draft_shows_and_sessions_are_not_found(
    api: Api, catalog: Catalog
) -> None:
    for path in [
        "/api/v1/shows/show-nope",
        "/api/v1/shows/show-nope/sessions",
        "/api/v1/sessions/session-nope/availability",
        f"/api/v1/shows/{catalog.draft}",
        f"/api/v1/shows/{catalog.draft}/sessions",
        "/api/v1/venues/venue-nope",
    ]:
        problem(await api.get(path), 404, "not_found")


async def test_the_internal_inventory_api_is_not_reachable_through_the_gateway(
    api: Api, catalog: Catalog
) -> None:
    path = f"/internal/inventory/{catalog.concert_session}/{catalog.vip}"
    problem(await api.get(path), 404, "not_found")
    problem(await api.post("/internal/reservations", json={}), 404, "not_found")


async def test_venues_can_be_browsed_by_city(api: Api, catalog: Catalog) -> None:
    page = ok(await api.get(f"/api/v1/venues?{urlencode({'city': '上海'})}"))
    assert [v["name"] for v in page["venues"]] == ["上海体育场"]
    venue = ok(await api.get(f"/api/v1/venues/{catalog.shanghai_stadium}"))
    assert venue["address"] == "上海市徐汇区天钥桥路666号"


# -- administration -------------------------------------------------------------------------

ADMIN_CALLS = [
    ("POST", "/api/v1/admin/venues"),
    ("GET", "/api/v1/admin/venues"),
    ("GET", "/api/v1/admin/venues/v"),
    ("PATCH", "/api/v1/admin/venues/v"),
    ("POST", "/api/v1/admin/shows"),
    ("GET", "/api/v1/admin/shows"),
    ("GET", "/api/v1/admin/shows/s"),
    ("PATCH", "/api/v1/admin/shows/s"),
    ("POST", "/api/v1/admin/shows/s/sessions"),
    ("GET", "/api/v1/admin/shows/s/sessions"),
    ("GET", "/api/v1/admin/sessions/s"),
    ("PATCH", "/api/v1/admin/sessions/s"),
    ("POST", "/api/v1/admin/sessions/s/seat-areas"),
    ("GET", "/api/v1/admin/sessions/s/seat-areas"),
    ("GET", "/api/v1/admin/seat-areas/a"),
    ("PATCH", "/api/v1/admin/seat-areas/a"),
]


@pytest.mark.parametrize(("method", "path"), ADMIN_CALLS)
async def test_admin_endpoints_refuse_anonymous_callers_and_customers(
    api: Api, customer: str, method: str, path: str
) -> None:
    anonymous = await api.request(method, path, json={})
    problem(anonymous, 401, "unauthorized")
    assert anonymous.header("www-authenticate")
    problem(await api.request(method, path, json={}, token=customer), 403, "forbidden")


async def test_the_bootstrap_admin_signs_in_and_creates_a_venue(api: Api) -> None:
    login = await api.post(
        "/api/v1/auth/login", json={"email": "admin@marquee.test", "password": "AdminPass123"}
    )
    token = ok(login)["access_token"]
    venue = await create(api, token, "/api/v1/admin/venues", {"name": "杭州大剧院", "city": "杭州"})
    assert (venue["name"], venue["city"], venue["timezone"]) == (
        "杭州大剧院",
        "杭州",
        "Asia/Shanghai",
    )
    assert venue["venue_id"].startswith("venue-")


async def test_an_admin_manages_venues(api: Api, admin: str, catalog: Catalog) -> None:
    path = f"/api/v1/admin/venues/{catalog.shanghai_stadium}"
    problem(
        await api.post(
            "/api/v1/admin/venues", json={"name": "上海体育场", "city": "上海"}, token=admin
        ),
        409,
        "already_exists",
    )
    patched = ok(await api.patch(path, json={"address": "天钥桥路666号"}, token=admin))
    assert (patched["name"], patched["address"]) == ("上海体育场", "天钥桥路666号")
    assert ok(await api.get(path, token=admin))["address"] == "天钥桥路666号"
    listed = ok(await api.get("/api/v1/admin/venues?page_size=100", token=admin))
    assert {v["city"] for v in listed["venues"]} == {"上海", "北京", "广州"}
    for body in [{"timezone": "Mars/Base"}, {"name": None}, {"name": ""}, {"colour": "red"}]:
        problem(await api.patch(path, json=body, token=admin), 422, "validation_error")
    problem(await api.patch("/api/v1/admin/venues/nope", json={}, token=admin), 404, "not_found")


async def test_an_admin_sees_drafts_and_publishes_a_show(
    api: Api, admin: str, catalog: Catalog
) -> None:
    drafts = ok(await api.get("/api/v1/admin/shows?status=draft", token=admin))
    assert [s["show_id"] for s in drafts["shows"]] == [catalog.draft]
    everything = ok(await api.get("/api/v1/admin/shows?page_size=100", token=admin))
    assert everything["total"] == 5

    published = ok(
        await api.patch(
            f"/api/v1/admin/shows/{catalog.draft}",
            json={"status": "on_sale", "title": "林俊杰 JJ20 巡回演唱会"},
            token=admin,
        )
    )
    assert (published["status"], published["title"]) == ("on_sale", "林俊杰 JJ20 巡回演唱会")
    assert catalog.draft in await show_ids(api, urlencode({"city": "上海", "category": "演唱会"}))
    detail = ok(await api.get(f"/api/v1/shows/{catalog.draft}"))
    assert detail["title"] == "林俊杰 JJ20 巡回演唱会"


async def test_an_admin_change_is_visible_in_the_next_listing(
    api: Api, admin: str, catalog: Catalog
) -> None:
    query = urlencode({"city": "上海", "category": "演唱会"})
    assert (
        (await api.get(f"/api/v1/shows?{query}")).json()["shows"][0]["title"].startswith("周杰伦")
    )
    await api.patch(
        f"/api/v1/admin/shows/{catalog.concert}", json={"title": "周杰伦 嘉年华"}, token=admin
    )
    assert (await api.get(f"/api/v1/shows?{query}")).json()["shows"][0]["title"] == "周杰伦 嘉年华"
    assert ok(await api.get(f"/api/v1/shows/{catalog.concert}"))["title"] == "周杰伦 嘉年华"
    await api.patch(f"/api/v1/admin/shows/{catalog.concert}", json={"status": "draft"}, token=admin)
    assert await show_ids(api, query) == []
    problem(await api.get(f"/api/v1/shows/{catalog.concert}"), 404, "not_found")


async def test_an_admin_moves_a_show_to_a_venue_named_by_name_and_city(
    api: Api, admin: str, catalog: Catalog
) -> None:
    moved = ok(
        await api.patch(
            f"/api/v1/admin/shows/{catalog.musical}",
            json={"venue": "深圳保利剧院", "city": "深圳"},
            token=admin,
        )
    )
    assert (moved["venue"], moved["city"]) == ("深圳保利剧院", "深圳")
    assert await show_ids(api, urlencode({"city": "深圳"})) == [catalog.musical]


@pytest.mark.parametrize(
    "body",
    [
        {"category": "演唱会", "venue_id": "v"},
        {"title": "x", "category": "演唱会"},
        {"title": "x", "category": "演唱会", "venue": "上海体育场"},
        {"title": "x", "category": "演唱会", "venue_id": "v", "status": "published"},
        {"title": "x" * 201, "category": "演唱会", "venue_id": "v"},
    ],
)
async def test_bad_shows_are_422_problems(
    api: Api, admin: str, catalog: Catalog, body: dict[str, Any]
) -> None:
    problem(await api.post("/api/v1/admin/shows", json=body, token=admin), 422, "validation_error")


async def test_an_admin_schedules_and_reschedules_sessions(
    api: Api, admin: str, catalog: Catalog
) -> None:
    start = evening(40, 14, 0)
    created = await create(
        api,
        admin,
        f"/api/v1/admin/shows/{catalog.football}/sessions",
        {
            "starts_at": start.isoformat(),
            "ends_at": (start + timedelta(hours=2)).isoformat(),
            "sale_starts_at": (datetime.now(UTC) + timedelta(days=1)).isoformat(),
            "per_user_limit": 6,
        },
    )
    assert (created["date"], created["per_user_limit"], created["on_sale"]) == (
        start.strftime("%Y-%m-%d 14:00"),
        6,
        False,
    )
    path = f"/api/v1/admin/sessions/{created['session_id']}"
    later = start + timedelta(days=1, hours=5)
    moved = ok(
        await api.patch(
            path,
            json={
                "starts_at": later.isoformat(),
                "ends_at": (later + timedelta(hours=2)).isoformat(),
                "sale_starts_at": None,
            },
            token=admin,
        )
    )
    assert (moved["date"], moved["sale_starts_at"], moved["on_sale"]) == (
        later.strftime("%Y-%m-%d 19:00"),
        None,
        True,
    )
    assert ok(await api.get(path, token=admin))["date"] == moved["date"]
    listed = ok(await api.get(f"/api/v1/admin/shows/{catalog.football}/sessions", token=admin))
    assert [s["session_id"] for s in listed["sessions"]] == [created["session_id"]]
    # Now scheduled, 41 days out: listed before the musical (60 days), no longer last.
    assert await show_ids(api, urlencode({"date_from": later.date().isoformat()})) == [
        catalog.football,
        catalog.musical,
    ]


@pytest.mark.parametrize(
    "body",
    [
        {"starts_at": "2027-08-15T19:30:00+08:00", "ends_at": "2027-08-15T19:00:00+08:00"},
        {"starts_at": "2027-08-15T19:30:00", "ends_at": "2027-08-15T22:30:00"},
        {"starts_at": "2027-08-15T19:30:00+08:00"},
        {
            "starts_at": "2027-08-15T19:30:00+08:00",
            "ends_at": "2027-08-15T22:30:00+08:00",
            "per_user_limit": 0,
        },
        {
            "starts_at": "2027-08-15T19:30:00+08:00",
            "ends_at": "2027-08-15T22:30:00+08:00",
            "sale_starts_at": "2027-08-16T00:00:00+08:00",
        },
    ],
)
async def test_bad_sessions_are_422_problems(
    api: Api, admin: str, catalog: Catalog, body: dict[str, Any]
) -> None:
    answer = await api.post(
        f"/api/v1/admin/shows/{catalog.football}/sessions", json=body, token=admin
    )
    problem(answer, 422, "validation_error")


async def test_sessions_and_seat_areas_of_unknown_parents_are_not_found(
    api: Api, admin: str
) -> None:
    start = evening(5)
    body = {"starts_at": start.isoformat(), "ends_at": (start + timedelta(hours=1)).isoformat()}
    problem(
        await api.post("/api/v1/admin/shows/nope/sessions", json=body, token=admin),
        404,
        "not_found",
    )
    area = {"name": "A", "price": 1, "capacity": 1}
    problem(
        await api.post("/api/v1/admin/sessions/nope/seat-areas", json=area, token=admin),
        404,
        "not_found",
    )
    for path in [
        "/api/v1/admin/shows/nope",
        "/api/v1/admin/sessions/nope",
        "/api/v1/admin/seat-areas/nope",
        "/api/v1/admin/shows/nope/sessions",
        "/api/v1/admin/sessions/nope/seat-areas",
    ]:
        problem(await api.get(path, token=admin), 404, "not_found")


async def test_an_admin_prices_and_resizes_seat_areas_but_never_below_what_is_taken(
    api: Api, admin: str, catalog: Catalog
) -> None:
    gateway = api.transport.app
    assert isinstance(gateway, Gateway)
    booking_view = CatalogClient(gateway.upstreams["catalog"])
    expires = datetime.now(UTC) + timedelta(hours=1)
    await booking_view.reserve("held", catalog.concert_session, catalog.vip, 3, expires)
    await booking_view.reserve("paid", catalog.concert_session, catalog.vip, 4, expires)
    await booking_view.confirm("paid")

    path = f"/api/v1/admin/seat-areas/{catalog.vip}"
    refused = problem(
        await api.patch(path, json={"capacity": 6}, token=admin), 409, "capacity_below_taken"
    )
    assert (refused["reserved"], refused["sold"], refused["taken"]) == (3, 4, 7)
    resized = ok(await api.patch(path, json={"capacity": 7, "price": 1480.5}, token=admin))
    assert (resized["capacity"], resized["available"], resized["price"]) == (7, 0, 1480.5)
    assert (resized["reserved"], resized["sold"]) == (3, 4)
    assert ok(await api.get(path, token=admin))["version"] == resized["version"]
    listed = ok(
        await api.get(f"/api/v1/admin/sessions/{catalog.concert_session}/seat-areas", token=admin)
    )
    assert [a["name"] for a in listed["seat_areas"]] == ["VIP A区", "学生票"]
    for body in [
        {"price": 1.001},
        {"price": "1480.5"},
        {"capacity": "7"},
        {"capacity": True},
        {"capacity": -1},
        {"currency": "yuan"},
        {"capacity": None},
    ]:
        problem(await api.patch(path, json=body, token=admin), 422, "validation_error")

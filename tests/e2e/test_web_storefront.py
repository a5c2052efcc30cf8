"""The storefront through the gateway: the pages, their caching, and the API left as it was."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest
from asgi_lifespan import LifespanManager

from marquee.compose import all_in_one
from marquee.platform.settings import Settings
from marquee.platform.transport import AsgiTransport
from tests.e2e.conftest import Api


async def test_the_home_page_is_the_storefront(api: Api) -> None:
    answer = await api.get("/")

    assert answer.status == 200
    assert answer.header("content-type") == "text/html; charset=utf-8"
    assert b'<main id="main"' in answer.body
    assert b'src="/assets/app.js"' in answer.body
    assert answer.header("x-request-id")


@pytest.mark.parametrize(
    "path", ["/shows/show-5678", "/orders", "/orders/o-1", "/login", "/console/refunds"]
)
async def test_a_reloaded_front_end_route_gets_the_page(api: Api, path: str) -> None:
    home = await api.get("/")
    answer = await api.get(path)

    assert answer.status == 200
    assert answer.body == home.body


async def test_assets_are_served_compressed_and_revalidated_with_a_304(api: Api) -> None:
    first = await api.get("/assets/shop.js", headers={"Accept-Encoding": "gzip"})
    etag = first.header("etag")
    again = await api.get("/assets/shop.js", headers={"If-None-Match": etag or ""})

    assert first.status == 200
    assert first.header("content-type") == "text/javascript; charset=utf-8"
    assert first.header("content-encoding") == "gzip"
    assert again.status == 304
    assert again.body == b""


async def test_head_answers_a_page_without_its_body(api: Api) -> None:
    get = await api.get("/assets/app.css")
    head = await api.request("HEAD", "/assets/app.css")

    assert head.status == 200
    assert head.body == b""
    assert head.header("content-length") == str(len(get.body))


@pytest.mark.parametrize("path", ["/assets/nope.js", "/nowhere", "/internal/users/u-1"])
async def test_unknown_paths_are_still_404_problems(api: Api, path: str) -> None:
    answer = await api.get(path)

    assert answer.status == 404
    assert answer.json()["code"] == "not_found"


async def test_pages_answer_only_reads(api: Api) -> None:
    answer = await api.post("/shows/show-5678", json={})

    assert answer.status == 405
    assert answer.header("allow") == "GET, HEAD"


async def test_the_api_is_not_shadowed_by_the_storefront(api: Api) -> None:
    answer = await api.get("/api/v1/shows")

    assert answer.status == 200
    assert answer.header("content-type") == "application/json"


@pytest.fixture
async def strict_api(e2e_settings: Settings) -> AsyncIterator[Api]:
    """The gateway allowing one API request per second per client."""
    settings = e2e_settings.model_copy(update={"rate_limit_per_second": 1.0, "rate_limit_burst": 1})
    gateway = all_in_one(settings)
    async with LifespanManager(gateway, startup_timeout=30, shutdown_timeout=30):
        yield Api(AsgiTransport(gateway))


async def test_pages_are_not_rate_limited_and_spend_none_of_the_api_allowance(
    strict_api: Api,
) -> None:
    pages = [await strict_api.get(path) for path in ["/", "/assets/app.js", "/shows/x"] * 5]
    first_call = await strict_api.get("/api/v1/shows")
    second_call = await strict_api.get("/api/v1/shows")

    assert {page.status for page in pages} == {200}
    assert all(page.header("ratelimit-limit") is None for page in pages)
    assert first_call.status == 200
    assert second_call.status == 429

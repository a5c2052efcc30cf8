"""The storefront's file table: which path gets which file, validators, gzip, and the files."""

from __future__ import annotations

import gzip
import re

import pytest

from marquee.web.site import APP_PATHS, Storefront

INDEX = b"<!doctype html><title>t</title>" + b"<p>storefront</p>" * 50
SCRIPT = b"export const answer = 42;\n" * 40


@pytest.fixture
def site() -> Storefront:
    return Storefront({"index.html": INDEX, "app.js": SCRIPT, "tiny.css": b"p{}"})


def test_the_root_and_every_front_end_route_get_the_index_page(site: Storefront) -> None:
    paths = ["/", *APP_PATHS, "/shows/show-5678", "/orders/o-1", "/console/shows/s-1"]

    assert {site.find(path).name for path in paths} == {"index.html"}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "path",
    [
        "/nowhere",
        "/showsx",
        "/api/v1/shows",
        "/internal/users/u",
        "/assets/",
        "/assets/x.js",
        "/assets/index.html",
        "/healthz",
    ],
)
def test_paths_that_are_not_the_storefronts_find_nothing(site: Storefront, path: str) -> None:
    assert site.find(path) is None


def test_an_asset_is_served_with_its_type_and_a_validator(site: Storefront) -> None:
    asset = site.find("/assets/app.js")
    assert asset is not None

    answer = site.response(asset, [])

    assert answer.status_code == 200
    assert answer.body == SCRIPT
    assert answer.headers["content-type"] == "text/javascript; charset=utf-8"
    assert answer.headers["cache-control"] == "no-cache"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert re.fullmatch(r'"[0-9a-f]{20}"', answer.headers["etag"])
    assert "content-security-policy" not in answer.headers


def test_the_page_forbids_foreign_scripts_and_framing(site: Storefront) -> None:
    answer = site.response(site.index, [])

    policy = answer.headers["content-security-policy"]
    assert "script-src 'self'" in policy
    assert "frame-ancestors 'none'" in policy
    assert answer.headers["content-type"] == "text/html; charset=utf-8"


@pytest.mark.parametrize("if_none_match", ['"{etag}"', 'W/"{etag}"', '"other", "{etag}"', "*"])
def test_a_current_copy_gets_a_304_without_a_body(site: Storefront, if_none_match: str) -> None:
    asset = site.find("/assets/app.js")
    assert asset is not None
    header = if_none_match.format(etag=asset.etag.strip('"')).encode()

    answer = site.response(asset, [(b"if-none-match", header)])

    assert answer.status_code == 304
    assert answer.body == b""
    assert answer.headers["etag"] == asset.etag


def test_a_stale_copy_gets_the_file(site: Storefront) -> None:
    asset = site.find("/assets/app.js")
    assert asset is not None

    answer = site.response(asset, [(b"if-none-match", b'"stale"')])

    assert answer.status_code == 200
    assert answer.body == SCRIPT


def test_gzip_is_sent_to_clients_that_take_it(site: Storefront) -> None:
    asset = site.find("/assets/app.js")
    assert asset is not None

    packed = site.response(asset, [(b"accept-encoding", b"br, gzip;q=0.8")])
    refused = site.response(asset, [(b"accept-encoding", b"gzip;q=0, br")])
    plain = site.response(asset, [])

    assert packed.headers["content-encoding"] == "gzip"
    assert gzip.decompress(packed.body) == SCRIPT
    assert "content-encoding" not in refused.headers
    assert "content-encoding" not in plain.headers
    assert packed.headers["vary"] == "Accept-Encoding"


def test_a_file_too_small_to_gain_from_gzip_is_sent_as_it_is(site: Storefront) -> None:
    asset = site.find("/assets/tiny.css")
    assert asset is not None

    answer = site.response(asset, [(b"accept-encoding", b"gzip")])

    assert "content-encoding" not in answer.headers
    assert answer.body == b"p{}"


def test_a_storefront_needs_an_index_page() -> None:
    with pytest.raises(ValueError, match=r"index\.html"):
        Storefront({"app.js": SCRIPT})


def test_every_file_the_shipped_pages_load_is_shipped() -> None:
    site = Storefront.from_package()
    index = site.index.body.decode()
    referenced = set(re.findall(r'(?:src|href)="(/assets/[^"]+)"', index))
    for asset in list(site.assets.values()):
        if asset.name.endswith(".js"):
            source = asset.body.decode()
            referenced |= {f"/assets/{name}" for name in re.findall(r"from '\./([\w.-]+)'", source)}

    assert "/assets/app.js" in referenced
    missing = sorted(path for path in referenced if site.find(path) is None)
    assert missing == []


def test_the_shipped_pages_load_nothing_from_other_sites() -> None:
    site = Storefront.from_package()

    for asset in [site.index, *site.assets.values()]:
        text = asset.body.decode(errors="replace")
        assert not re.search(r"https?://(?!www\.w3\.org/2000/svg)", text), asset.name

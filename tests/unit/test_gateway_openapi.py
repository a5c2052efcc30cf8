"""Merging the services' OpenAPI documents into the public API's one."""

from __future__ import annotations

import asyncio
from typing import Any

import orjson

from marquee.gateway.openapi import BEARER_SCHEME, MergedDocument, merge
from marquee.gateway.routing import route
from marquee.platform.transport import Response, UpstreamUnavailable


def ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def operation(schema: str, *, body: str | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {
        "responses": {"200": {"content": {"application/json": {"schema": ref(schema)}}}}
    }
    if body:
        op["requestBody"] = {"content": {"application/json": {"schema": ref(body)}}}
    return op


VALIDATION = {"type": "object", "properties": {"detail": {"type": "array"}}}

IDENTITY: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Marquee identity", "version": "0.1.0"},
    "paths": {
        "/api/v1/auth/login": {"post": operation("Tokens", body="Login")},
        "/api/v1/users/me": {"get": operation("Profile")},
        "/internal/users/{user_id}": {"get": operation("Profile")},
        "/api/v1/shows": {"get": operation("Profile")},  # not identity's to publish
    },
    "components": {
        "schemas": {
            "Tokens": {"type": "object"},
            "Login": {"type": "object", "properties": {"email": {"type": "string"}}},
            "Profile": {"type": "object", "properties": {"email": {"type": "string"}}},
            "HTTPValidationError": VALIDATION,
        }
    },
    "tags": [{"name": "auth"}],
}

CATALOG: dict[str, Any] = {
    "openapi": "3.1.0",
    "info": {"title": "Marquee catalog", "version": "0.1.0"},
    "paths": {
        "/api/v1/shows": {"get": operation("ShowList")},
        "/api/v1/shows/{show_id}": {"get": operation("Profile"), "delete": operation("Profile")},
        "/internal/inventory/reserve": {"post": operation("ShowList")},
    },
    "components": {
        "schemas": {
            "ShowList": {"type": "object", "properties": {"shows": {"type": "array"}}},
            # Same name as Identity's, a different shape: both must survive, renamed.
            "Profile": {"type": "object", "properties": {"venue": {"type": "string"}}},
            "HTTPValidationError": VALIDATION,
        }
    },
    "tags": [{"name": "auth"}, {"name": "shows"}],
}


def merged() -> dict[str, Any]:
    return merge({"identity": IDENTITY, "catalog": CATALOG}, route)


def test_only_the_paths_the_gateway_routes_to_each_service_are_published() -> None:
    paths = merged()["paths"]

    assert set(paths) == {
        "/api/v1/auth/login",
        "/api/v1/users/me",
        "/api/v1/shows",
        "/api/v1/shows/{show_id}",
    }
    assert not any("/internal" in path for path in paths)


def test_a_path_comes_from_the_service_that_owns_it() -> None:
    shows = merged()["paths"]["/api/v1/shows"]["get"]

    schema = shows["responses"]["200"]["content"]["application/json"]["schema"]
    assert schema == ref("ShowList")


def test_colliding_schemas_are_prefixed_with_their_service_and_refs_follow() -> None:
    document = merged()
    schemas = document["components"]["schemas"]
    me = document["paths"]["/api/v1/users/me"]["get"]
    show = document["paths"]["/api/v1/shows/{show_id}"]["get"]

    assert "Profile" not in schemas
    assert schemas["identity_Profile"] == IDENTITY["components"]["schemas"]["Profile"]
    assert schemas["catalog_Profile"] == CATALOG["components"]["schemas"]["Profile"]
    assert me["responses"]["200"]["content"]["application/json"]["schema"] == ref(
        "identity_Profile"
    )
    assert show["responses"]["200"]["content"]["application/json"]["schema"] == ref(
        "catalog_Profile"
    )


def test_identical_schemas_are_kept_once_under_their_own_name() -> None:
    schemas = merged()["components"]["schemas"]

    assert schemas["HTTPValidationError"] == VALIDATION
    assert not any(name.endswith("_HTTPValidationError") for name in schemas)


def test_every_ref_in_the_merged_document_resolves() -> None:
    document = merged()
    schemas = document["components"]["schemas"]

    def refs(node: Any) -> list[str]:
        if isinstance(node, dict):
            found = [node["$ref"]] if "$ref" in node else []
            return found + [r for value in node.values() for r in refs(value)]
        if isinstance(node, list):
            return [r for item in node for r in refs(item)]
        return []

    names = [r.removeprefix("#/components/schemas/") for r in refs(document)]
    assert names
    assert all(name in schemas for name in names)


def test_protected_operations_ask_for_the_bearer_token_and_public_ones_do_not() -> None:
    document = merged()
    paths = document["paths"]
    needs_token: list[dict[str, list[str]]] = [{BEARER_SCHEME: []}]

    assert "security" not in paths["/api/v1/auth/login"]["post"]
    assert "security" not in paths["/api/v1/shows"]["get"]
    assert "security" not in paths["/api/v1/shows/{show_id}"]["get"]
    assert paths["/api/v1/shows/{show_id}"]["delete"]["security"] == needs_token
    assert paths["/api/v1/users/me"]["get"]["security"] == needs_token
    assert document["components"]["securitySchemes"][BEARER_SCHEME]["scheme"] == "bearer"


def test_tags_are_merged_without_duplicates() -> None:
    assert merged()["tags"] == [{"name": "auth"}, {"name": "shows"}]


def test_merging_leaves_the_services_documents_untouched() -> None:
    before = repr(IDENTITY), repr(CATALOG)

    merged()

    assert (repr(IDENTITY), repr(CATALOG)) == before


def test_a_missing_service_leaves_its_paths_out_and_the_rest_in() -> None:
    document = merge({"catalog": CATALOG}, route)

    assert set(document["paths"]) == {"/api/v1/shows", "/api/v1/shows/{show_id}"}
    assert "Profile" in document["components"]["schemas"]


def test_no_documents_still_make_a_valid_empty_document() -> None:
    document = merge({}, route)

    assert document["openapi"].startswith("3.")
    assert document["paths"] == {}


class FakeService:
    """A transport that serves one OpenAPI document, or fails while ``down``."""

    def __init__(self, document: dict[str, Any]) -> None:
        self.document = document
        self.down = False
        self.asked = 0

    async def request(self, method: str, path: str, **kwargs: Any) -> Response:
        self.asked += 1
        await asyncio.sleep(0)
        if self.down:
            raise UpstreamUnavailable("down")
        assert (method, path) == ("GET", "/openapi.json")
        return Response(200, [("content-type", "application/json")], orjson.dumps(self.document))

    async def close(self) -> None:
        return None


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


async def test_a_complete_document_is_fetched_once_and_kept() -> None:
    identity, catalog = FakeService(IDENTITY), FakeService(CATALOG)
    docs = MergedDocument({"identity": identity, "catalog": catalog}, route)

    answers = await asyncio.gather(*(docs.json() for _ in range(5)))
    again = await docs.json()

    assert len({*answers, again}) == 1
    assert orjson.loads(again) == merged()
    assert (identity.asked, catalog.asked) == (1, 1)


async def test_an_incomplete_document_is_kept_briefly_then_asked_for_again() -> None:
    identity, catalog = FakeService(IDENTITY), FakeService(CATALOG)
    catalog.down = True
    clock = Clock()
    docs = MergedDocument(
        {"identity": identity, "catalog": catalog}, route, retry_incomplete=5.0, clock=clock
    )

    first = orjson.loads(await docs.json())
    clock.now += 4.9
    still = orjson.loads(await docs.json())
    catalog.down = False
    clock.now += 0.1
    complete = orjson.loads(await docs.json())
    clock.now += 3600
    kept = orjson.loads(await docs.json())

    assert "/api/v1/shows" not in first["paths"]
    assert still == first
    assert complete == kept == merged()
    assert (identity.asked, catalog.asked) == (2, 2)

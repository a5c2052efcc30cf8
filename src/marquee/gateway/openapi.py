"""The public API's one OpenAPI document, merged from every service's own.

``merge`` is pure. ``MergedDocument`` fetches each upstream's ``/openapi.json`` through its
transport (in-process or HTTP alike), merges them, and keeps the result once every service
has answered: the public API does not change while the processes run.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Mapping
from typing import Any

import orjson

from marquee.gateway.edgeauth import Access, required_access
from marquee.platform.contract import PROBLEM_REF, PROBLEM_SCHEMA, ProblemDetails
from marquee.platform.problems import PROBLEM_CONTENT_TYPE
from marquee.platform.transport import Transport

log = logging.getLogger("marquee.gateway")

OPENAPI_VERSION = "3.1.0"
BEARER_SCHEME = "bearerAuth"
_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})
_FETCH_TIMEOUT_SECONDS = 5.0

Document = dict[str, Any]


def _rename_refs(node: Any, renames: Mapping[str, str]) -> Any:
    """A copy of ``node`` with every ``$ref`` in ``renames`` pointed at its new name."""
    if isinstance(node, dict):
        copied: dict[str, Any] = {}
        for key, value in node.items():
            if key == "$ref" and isinstance(value, str):
                copied[key] = renames.get(value, value)
            else:
                copied[key] = _rename_refs(value, renames)
        return copied
    if isinstance(node, list):
        return [_rename_refs(item, renames) for item in node]
    return node


def _component_names(
    documents: Mapping[str, Mapping[str, Any]],
) -> dict[str, dict[str, str]]:
    """For each service, ``{old $ref: new $ref}`` for components whose names collide.

    A name defined identically by several services is kept once (FastAPI's
    ``HTTPValidationError`` is the usual case); a name defined differently by several services
    becomes ``{service}_{name}`` in every one of them, so none wins by accident of order.
    """
    seen: dict[tuple[str, str], dict[str, Any]] = {}
    for service, document in documents.items():
        for kind, group in (document.get("components") or {}).items():
            if not isinstance(group, dict):
                continue
            for name, definition in group.items():
                seen.setdefault((kind, name), {})[service] = definition
    renames: dict[str, dict[str, str]] = {service: {} for service in documents}
    for (kind, name), by_service in seen.items():
        definitions = list(by_service.values())
        if all(definition == definitions[0] for definition in definitions[1:]):
            continue
        for service in by_service:
            old = f"#/components/{kind}/{name}"
            renames[service][old] = f"#/components/{kind}/{service}_{name}"
    return renames


# What the gateway itself can answer on any routed request, before or instead of the service.
_EDGE_STATUSES = {
    "429": "Too many requests from this address (Retry-After says when to try again).",
    "502": "The service gave no usable answer.",
    "503": "The service is at capacity or unavailable (Retry-After says when to retry).",
    "504": "The service did not answer in time.",
}
_BODY_STATUSES = {
    "400": "The body is not valid JSON, or its Content-Length is not a number.",
    "413": "The body is larger than 1 MiB.",
}


def _problem(description: str) -> dict[str, Any]:
    return {
        "description": description,
        "content": {PROBLEM_CONTENT_TYPE: {"schema": {"$ref": PROBLEM_REF}}},
    }


def _at_the_edge(path: str, operations: dict[str, Any]) -> dict[str, Any]:
    """Each operation with what the edge adds: the bearer-token requirement where it demands
    one (for Swagger UI too), and the error statuses the gateway itself answers."""
    edged: dict[str, Any] = {}
    for method, operation in operations.items():
        if method not in _HTTP_METHODS or not isinstance(operation, dict):
            edged[method] = operation
            continue
        operation = dict(operation)
        responses = dict(operation.get("responses") or {})
        statuses = dict(_EDGE_STATUSES)
        if "requestBody" in operation:
            statuses.update(_BODY_STATUSES)
        access = required_access(method.upper(), path)
        if access is not Access.PUBLIC:
            operation.setdefault("security", [{BEARER_SCHEME: []}])
            statuses["401"] = "No valid access token: sign in, or refresh the token."
        if access is Access.ADMIN:
            statuses["403"] = "The access token is not an organiser's."
        for status, description in statuses.items():
            responses.setdefault(status, _problem(description))
        operation["responses"] = dict(sorted(responses.items()))
        edged[method] = operation
    return edged


def merge(
    documents: Mapping[str, Mapping[str, Any]],
    owner: Callable[[str], str | None],
    *,
    title: str = "Marquee API",
    version: str = "1",
) -> Document:
    """One document from each service's, keeping only the paths the gateway routes to it.

    ``documents`` maps service name to its OpenAPI document; ``owner(path)`` names the service
    the gateway sends ``path`` to (None: not public), so internal endpoints never appear.
    Components are merged (colliding names prefixed, see ``_component_names``), every
    operation the edge protects carries a bearer-token security requirement, and every
    operation lists the error statuses the gateway itself may answer (``_at_the_edge``).
    """
    renames = _component_names(documents)
    paths: dict[str, Any] = {}
    components: dict[str, dict[str, Any]] = {}
    tags: dict[str, Any] = {}
    for service, document in documents.items():
        mapping = renames[service]
        for path, operations in (document.get("paths") or {}).items():
            if owner(path) == service and isinstance(operations, dict):
                paths[path] = _at_the_edge(path, _rename_refs(operations, mapping))
        for kind, group in (document.get("components") or {}).items():
            if not isinstance(group, dict):
                continue
            merged = components.setdefault(kind, {})
            for name, definition in group.items():
                new_ref = mapping.get(f"#/components/{kind}/{name}")
                new_name = new_ref.rsplit("/", 1)[1] if new_ref else name
                merged[new_name] = _rename_refs(definition, mapping)
        for tag in document.get("tags") or ():
            if isinstance(tag, dict) and "name" in tag:
                tags.setdefault(tag["name"], tag)
    components.setdefault("schemas", {}).setdefault(
        PROBLEM_SCHEMA,
        ProblemDetails.model_json_schema(ref_template="#/components/schemas/{model}"),
    )
    components.setdefault("securitySchemes", {})[BEARER_SCHEME] = {
        "type": "http",
        "scheme": "bearer",
        "bearerFormat": "JWT",
        "description": "The access token from POST /api/v1/auth/login or /register.",
    }
    merged_document: Document = {
        "openapi": OPENAPI_VERSION,
        "info": {"title": title, "version": version},
        "paths": dict(sorted(paths.items())),
        "components": {kind: dict(sorted(group.items())) for kind, group in components.items()},
    }
    if tags:
        merged_document["tags"] = list(tags.values())
    return merged_document


class MergedDocument:
    """The merged document as JSON bytes, fetched on first use and kept once complete.

    While a service cannot be reached the document leaves it out, and that incomplete answer
    is kept for ``retry_incomplete`` seconds before every service is asked again, so a client
    reloading the docs cannot turn into a stream of requests to the services.
    """

    def __init__(
        self,
        upstreams: Mapping[str, Transport],
        owner: Callable[[str], str | None],
        *,
        title: str = "Marquee API",
        version: str = "1",
        retry_incomplete: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.upstreams = upstreams
        self.owner = owner
        self.title = title
        self.version = version
        self.retry_incomplete = retry_incomplete
        self._clock = clock
        self._complete: bytes | None = None
        self._incomplete: tuple[bytes, float] | None = None  # (document, fetched at)
        self._lock = asyncio.Lock()

    async def _fetch(self, service: str, transport: Transport) -> Mapping[str, Any] | None:
        try:
            answer = await transport.request("GET", "/openapi.json", timeout=_FETCH_TIMEOUT_SECONDS)
            if answer.status != 200:
                raise ValueError(f"status {answer.status}")
            document = answer.json()
            if not isinstance(document, dict):
                raise ValueError("not a JSON object")
        except Exception as exc:
            log.warning("OpenAPI document of %s unavailable: %s", service, exc or type(exc))
            return None
        return document

    def _kept(self) -> bytes | None:
        if self._complete is not None:
            return self._complete
        if self._incomplete is not None:
            body, fetched_at = self._incomplete
            if self._clock() - fetched_at < self.retry_incomplete:
                return body
        return None

    async def json(self) -> bytes:
        """The merged document (see the class docstring for what is kept, and how long)."""
        kept = self._kept()
        if kept is not None:
            return kept
        async with self._lock:
            kept = self._kept()
            if kept is not None:
                return kept
            names = list(self.upstreams)
            fetched = await asyncio.gather(
                *(self._fetch(name, self.upstreams[name]) for name in names)
            )
            documents = {
                name: doc for name, doc in zip(names, fetched, strict=True) if doc is not None
            }
            body = orjson.dumps(
                merge(documents, self.owner, title=self.title, version=self.version)
            )
            if len(documents) == len(names):
                self._complete = body
            else:
                self._incomplete = (body, self._clock())
            return body

"""deploy/compose.yaml: valid against the Compose Specification's schema, and what it promises.

Docker cannot run here, so the file is checked as ``docker compose config`` would check it
(the specification's own JSON schema, vendored in deploy/schema/), plus the properties the
deployment relies on.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from marquee.platform.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SCHEMA = ROOT / "deploy" / "schema" / "compose-spec.json"
MARQUEE_SERVICES = {"migrate", "identity", "catalog", "booking", "notification", "gateway"}
# ${NAME}, ${NAME:-default}, ${NAME-default}; $$ is a literal dollar.
VARIABLE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolated(text: str) -> str:
    """The file as Compose reads it with no variables set: each takes its default."""
    return VARIABLE.sub(lambda m: m.group(2) or "", text)


def load(text: str) -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(interpolated(text))
    return document


def schema_errors(document: dict[str, Any]) -> list[str]:
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    return [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in validator.iter_errors(document)
    ]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return load(COMPOSE.read_text())


def test_the_compose_file_is_valid_against_the_compose_specification(
    compose: dict[str, Any],
) -> None:
    assert schema_errors(compose) == []


def test_the_schema_check_catches_a_misspelt_key() -> None:
    broken = load(COMPOSE.read_text().replace("healthcheck:", "healtcheck:", 1))

    assert any("healtcheck" in error for error in schema_errors(broken))


def test_only_the_gateway_publishes_a_port(compose: dict[str, Any]) -> None:
    published = {name for name, service in compose["services"].items() if service.get("ports")}

    assert published == {"gateway"}
    assert compose["networks"]["backend"]["internal"] is True
    assert set(compose["services"]["gateway"]["networks"]) == {"backend", "edge"}


def test_every_marquee_service_waits_for_the_migration(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert services["migrate"]["command"] == ["migrate"]
    for name in MARQUEE_SERVICES - {"migrate", "gateway"}:
        assert services[name]["depends_on"]["migrate"] == {
            "condition": "service_completed_successfully"
        }, name
        assert services[name]["command"] == ["serve", name]
    assert services["booking"]["deploy"]["replicas"] >= 2


def test_every_server_has_a_health_check_and_a_volume(compose: dict[str, Any]) -> None:
    for name in ("postgres", "redis", "nats"):
        server = compose["services"][name]
        assert server["healthcheck"]["test"], name
        assert server["volumes"], name


def test_credentials_come_from_secret_files_never_from_the_file(
    compose: dict[str, Any],
) -> None:
    declared = compose["secrets"]
    secret_names = {"PASSWORD", "SECRET", "TOKEN", "KEY", "DATABASE_URL", "CACHE_URL"}
    for name, service in compose["services"].items():
        for variable in service.get("environment") or {}:
            assert not any(word in variable for word in secret_names) or variable.endswith(
                ("_FILE", "_EMAIL", "_SECRETS_DIR")
            ), f"{name} sets {variable} inline"
        for secret in service.get("secrets") or []:
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in declared, f"{name} uses undeclared secret {source}"
    script = (ROOT / "deploy" / "secrets.sh").read_text()
    for name, secret in declared.items():
        assert secret["file"] == f"./secrets/{name}"
        assert f"keep {name} " in script, f"deploy/secrets.sh does not write {name}"
    ignored = (ROOT / "deploy" / "secrets" / ".gitignore").read_text().split()
    assert ignored[0] == "*"


def test_every_marquee_variable_is_a_setting(compose: dict[str, Any]) -> None:
    known = {f"MARQUEE_{name.upper()}" for name in Settings.model_fields} | {"MARQUEE_SECRETS_DIR"}
    used: set[str] = set()
    for service in compose["services"].values():
        used |= {v for v in service.get("environment") or {} if v.startswith("MARQUEE_")}
        for secret in service.get("secrets") or []:
            if isinstance(secret, dict) and secret.get("target", "").startswith("MARQUEE_"):
                used.add(secret["target"])
    assert used - known == set()

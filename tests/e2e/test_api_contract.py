"""The OpenAPI document tells the truth: schemathesis, every check it has, against ``marquee up``
as a customer and as an organiser, with a fixed seed and a bounded number of examples.

It generates requests from the document (valid and invalid ones, single calls and chains of
calls) and checks every answer against it: no server error, only documented statuses,
content types and headers, answers that match their schemas, schema-valid requests
accepted and schema-invalid ones refused, authentication enforced. Its configuration (one
cross-field rule JSON Schema cannot state) is ``schemathesis.toml`` beside this file.
"""

from __future__ import annotations

import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.marquee_up import BUYER_PASSWORD, Server, running

CONFIG = Path(__file__).with_name("schemathesis.toml")
SEED = "20261201"
EXAMPLES = "5"


@pytest.fixture(scope="module")
def marquee(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    with running(
        tmp_path_factory.mktemp("contract"),
        MARQUEE_RATE_LIMIT_PER_SECOND="100000",
        MARQUEE_RATE_LIMIT_BURST="100000",
    ) as server:
        yield server


def schemathesis(server: Server, token: str, tmp_path: Path) -> None:
    command = [
        str(Path(sys.executable).with_name("st")),
        "--config-file", str(CONFIG),
        "run", f"{server.base}/openapi.json",
        "--checks", "all",
        "--seed", SEED,
        "--max-examples", EXAMPLES,
        # One worker: Python 3.11 can fail compiling the generators' code in parallel threads.
        "--workers", "1",
        "--request-timeout", "60",
        "--header", f"Authorization: Bearer {token}",
    ]  # fmt: skip
    done = subprocess.run(  # noqa: S603
        command, capture_output=True, text=True, cwd=tmp_path, timeout=900, check=False
    )
    report = done.stdout + done.stderr
    assert done.returncode == 0, report[-20_000:]


def test_the_document_holds_for_a_customer(marquee: Server, tmp_path: Path) -> None:
    email = f"contract-{uuid.uuid4().hex[:10]}@example.com"
    account = {"email": email, "password": BUYER_PASSWORD, "full_name": "Contract Tester"}
    token = marquee.call("POST", "/api/v1/auth/register", account)["access_token"]
    schemathesis(marquee, token, tmp_path)


def test_the_document_holds_for_an_organiser(marquee: Server, tmp_path: Path) -> None:
    marquee.admin("GET", "/api/v1/admin/users?limit=1")
    schemathesis(marquee, marquee.admin_token, tmp_path)

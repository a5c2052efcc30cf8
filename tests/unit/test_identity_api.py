"""Identity's error table: every domain error has exactly one problem-details answer."""

from __future__ import annotations

import pytest

from marquee.identity import domain
from marquee.identity.api import ERRORS, problem_for


def _all_errors(base: type[domain.IdentityError]) -> set[type[domain.IdentityError]]:
    found: set[type[domain.IdentityError]] = set()
    for sub in base.__subclasses__():
        found |= {sub} | _all_errors(sub)
    return found


CONCRETE = sorted(
    (kind for kind in _all_errors(domain.IdentityError) if kind is not domain.RefreshTokenError),
    key=lambda kind: kind.__name__,
)


def test_every_concrete_identity_error_is_in_the_table() -> None:
    assert set(CONCRETE) <= set(ERRORS)


def _example(kind: type[domain.IdentityError]) -> domain.IdentityError:
    if kind is domain.WeakPasswordError:
        return domain.WeakPasswordError(("must contain a digit",))
    if kind is domain.TooManyAttemptsError:
        return domain.TooManyAttemptsError(179.2)
    return kind("because")


@pytest.mark.parametrize("kind", CONCRETE, ids=lambda kind: kind.__name__)
def test_each_error_becomes_a_client_error_with_a_code(kind: type[domain.IdentityError]) -> None:
    problem = problem_for(_example(kind))
    assert 400 <= problem.status < 500
    assert problem.code == ERRORS[kind][1]


def test_codes_are_unique_so_clients_can_tell_errors_apart() -> None:
    codes = [code for _, code in ERRORS.values()]
    assert len(codes) == len(set(codes))


def test_unauthorised_answers_carry_a_challenge() -> None:
    for kind, (status, _) in ERRORS.items():
        headers = problem_for(_example(kind)).headers
        assert ("WWW-Authenticate" in headers) == (status == 401)


def test_a_throttled_sign_in_says_when_to_come_back_in_whole_seconds() -> None:
    problem = problem_for(domain.TooManyAttemptsError(179.2))
    assert problem.status == 429
    assert problem.headers["Retry-After"] == "180"
    assert problem.extra["retry_after"] == 180


def test_a_weak_password_lists_every_broken_rule() -> None:
    problem = problem_for(domain.WeakPasswordError(("must contain a digit", "must be longer")))
    assert problem.code == "weak_password"
    assert problem.extra["reasons"] == ["must contain a digit", "must be longer"]
    assert "must contain a digit" in problem.detail

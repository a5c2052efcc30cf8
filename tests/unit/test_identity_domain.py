"""Identity's pure rules: emails, passwords, names, phones, locales, refresh-token families."""

from __future__ import annotations

import re
import string
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from marquee.identity.domain import (
    FULL_NAME_PATTERN,
    LOCALE_PATTERN,
    MAX_NAME_LENGTH,
    PASSWORD_PATTERN,
    PHONE_PATTERN,
    FamilyId,
    IdentityError,
    InvalidEmailError,
    InvalidLocaleError,
    InvalidNameError,
    InvalidPhoneError,
    LoginThrottle,
    RefreshRecord,
    RefreshTokenExpiredError,
    RefreshTokenReusedError,
    RefreshTokenRevokedError,
    RefreshVerdict,
    UserId,
    WeakPasswordError,
    breached_passwords,
    check_password,
    judge_refresh,
    locale_from_accept_language,
    normalise_email,
    normalise_full_name,
    normalise_locale,
    normalise_phone,
    password_problems,
    refusal,
)

NOW = datetime(2026, 1, 14, 15, 30, tzinfo=UTC)

# -- emails -------------------------------------------------------------------------------


def test_an_email_is_trimmed_and_lower_cased() -> None:
    assert normalise_email("  Alice.Wang@Example.COM \n") == "alice.wang@example.com"


def test_plus_addressing_and_subdomains_are_kept() -> None:
    assert normalise_email("a+tickets@mail.example.co.uk") == "a+tickets@mail.example.co.uk"


def test_an_internationalised_domain_is_stored_in_its_ascii_form() -> None:
    assert normalise_email("anna@Bücher.de") == "anna@xn--bcher-kva.de"


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "alice",
        "alice@",
        "@example.com",
        "alice@example",
        "alice@@example.com",
        "al ice@example.com",
        "alice@exa mple.com",
        ".alice@example.com",
        "alice.@example.com",
        "al..ice@example.com",
        "alice@-example.com",
        "alice@example..com",
        "alice@example.123",
        '"alice"@example.com',
        "a" * 65 + "@example.com",
        "alice@" + "a" * 64 + ".com",
        "a@" + ".".join(["abcdefgh"] * 30) + ".com",
    ],
)
def test_malformed_emails_are_refused(raw: str) -> None:
    with pytest.raises(InvalidEmailError):
        normalise_email(raw)


_LOCAL_CHARS = string.ascii_letters + string.digits + "!#$%&'*+/=?^_`{|}~-"
local_parts = st.lists(st.text(_LOCAL_CHARS, min_size=1, max_size=10), min_size=1, max_size=3).map(
    ".".join
)
domains = st.lists(
    st.text(string.ascii_letters + string.digits, min_size=1, max_size=12), min_size=1, max_size=3
).map(lambda labels: ".".join([*labels, "com"]))
emails = st.builds(lambda local, domain: f"{local}@{domain}", local_parts, domains)


@given(emails, st.sampled_from(["", " ", "\t", "\n "]))
def test_normalising_is_idempotent_and_ignores_case_and_surrounding_space(
    email: str, pad: str
) -> None:
    once = normalise_email(pad + email + pad)
    assert normalise_email(once) == once
    assert normalise_email(email.upper()) == once
    assert once == once.strip().lower()


# -- passwords ----------------------------------------------------------------------------


def test_the_seed_password_meets_the_policy() -> None:
    assert password_problems("SecurePass123", email="alice@example.com") == ()
    check_password("SecurePass123", email="alice@example.com")


@pytest.mark.parametrize(
    ("password", "broken"),
    [
        ("Short1", "at least 8 characters"),
        ("onlyletters", "a digit"),
        ("1234567890", "a letter"),
        ("x1" * 65, "at most 128 characters"),
        ("password1", "commonest passwords"),
        ("PassWord123", "commonest passwords"),
        ("1q2w3e4r", "commonest passwords"),
    ],
)
def test_a_weak_password_is_refused_with_the_rule_it_breaks(password: str, broken: str) -> None:
    with pytest.raises(WeakPasswordError) as refused:
        check_password(password, email="alice@example.com")
    assert any(broken in reason for reason in refused.value.reasons)
    assert broken in str(refused.value)


def test_the_email_address_is_not_a_password_whatever_its_case() -> None:
    problems = password_problems("Alice1@Example.com", email="alice1@example.com")
    assert problems == ("must not be your email address",)


def test_every_broken_rule_is_reported_at_once() -> None:
    assert len(password_problems("")) == 3


@given(st.text(max_size=200))
def test_a_password_passes_exactly_when_it_breaks_no_rule(password: str) -> None:
    fine = (
        8 <= len(password) <= 128
        and bool(re.search(r"[^\W\d_]", password))
        and bool(re.search(r"\d", password))
        and password.lower() not in breached_passwords()
    )
    assert (password_problems(password) == ()) == fine


# -- names, phones, locales ---------------------------------------------------------------


def test_a_full_name_is_trimmed_and_its_spaces_collapsed() -> None:
    assert normalise_full_name("  Alice \t  Wang ") == "Alice Wang"
    assert normalise_full_name("王小明") == "王小明"


@pytest.mark.parametrize("raw", ["", "   ", "x" * 101, "Alice\x00Wang", "Alice\x1bWang"])
def test_empty_overlong_or_control_character_names_are_refused(raw: str) -> None:
    with pytest.raises(InvalidNameError):
        normalise_full_name(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("+86 138 1234 5678", "+8613812345678"),
        ("+1 (415) 555-0100", "+14155550100"),
        ("0044 20 7946 0958", "+442079460958"),
        ("+49.30.1234567", "+49301234567"),
        (None, None),
        ("   ", None),
    ],
)
def test_phones_become_e164(raw: str | None, expected: str | None) -> None:
    assert normalise_phone(raw) == expected


@pytest.mark.parametrize(
    "raw", ["13812345678", "+0123456789", "+12345", "+1234567890123456", "+86 abc 1234", "++861"]
)
def test_phones_without_a_country_code_or_of_the_wrong_length_are_refused(raw: str) -> None:
    with pytest.raises(InvalidPhoneError):
        normalise_phone(raw)


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("zh-cn", "zh-CN"),
        ("en", "en"),
        ("en_GB", "en-GB"),
        ("zh-hans", "zh-Hans"),
        ("es-419", "es-419"),
    ],
)
def test_locales_are_written_in_their_usual_case(raw: str, expected: str) -> None:
    assert normalise_locale(raw) == expected


@pytest.mark.parametrize("raw", ["", "english", "zh-", "z", "zh-CN-x-private"])
def test_malformed_locales_are_refused(raw: str) -> None:
    with pytest.raises(InvalidLocaleError):
        normalise_locale(raw)


# -- refresh-token families ---------------------------------------------------------------

LIVE = RefreshRecord(
    jti="j1",
    user_id=UserId("u1"),
    family_id=FamilyId("f1"),
    issued_at=NOW - timedelta(days=1),
    expires_at=NOW + timedelta(days=29),
    used_at=None,
    revoked_at=None,
)


def test_a_live_unused_token_is_rotated() -> None:
    assert judge_refresh(LIVE, NOW) is RefreshVerdict.ROTATE


def test_a_token_presented_a_second_time_is_reuse() -> None:
    assert judge_refresh(replace(LIVE, used_at=NOW), NOW) is RefreshVerdict.REUSED


def test_a_used_token_is_reuse_even_after_it_expired() -> None:
    old = replace(LIVE, used_at=NOW - timedelta(days=40), expires_at=NOW - timedelta(days=10))
    assert judge_refresh(old, NOW) is RefreshVerdict.REUSED


def test_a_revoked_family_stays_revoked_whatever_else_is_true() -> None:
    revoked = replace(LIVE, revoked_at=NOW, used_at=NOW)
    assert judge_refresh(revoked, NOW) is RefreshVerdict.REVOKED
    assert judge_refresh(replace(LIVE, revoked_at=NOW), NOW) is RefreshVerdict.REVOKED


def test_a_token_expires_at_its_expiry_instant() -> None:
    assert judge_refresh(LIVE, LIVE.expires_at - timedelta(microseconds=1)) is RefreshVerdict.ROTATE
    assert judge_refresh(LIVE, LIVE.expires_at) is RefreshVerdict.EXPIRED


@given(
    used=st.booleans(),
    revoked=st.booleans(),
    age=st.integers(min_value=0, max_value=60 * 86400),
)
def test_only_a_live_unused_unrevoked_token_is_ever_rotated(
    used: bool, revoked: bool, age: int
) -> None:
    record = replace(
        LIVE,
        used_at=NOW if used else None,
        revoked_at=NOW if revoked else None,
        issued_at=NOW - timedelta(seconds=age),
        expires_at=NOW - timedelta(seconds=age) + timedelta(days=30),
    )
    rotated = judge_refresh(record, NOW) is RefreshVerdict.ROTATE
    assert rotated == (not used and not revoked and age < 30 * 86400)


@pytest.mark.parametrize(
    ("verdict", "error"),
    [
        (RefreshVerdict.REUSED, RefreshTokenReusedError),
        (RefreshVerdict.REVOKED, RefreshTokenRevokedError),
        (RefreshVerdict.EXPIRED, RefreshTokenExpiredError),
    ],
)
def test_each_refusal_has_its_own_error(verdict: RefreshVerdict, error: type[Exception]) -> None:
    assert isinstance(refusal(verdict), error)


def test_rotation_is_not_a_refusal() -> None:
    with pytest.raises(ValueError, match="not a refusal"):
        refusal(RefreshVerdict.ROTATE)


# -- sign-in throttling -------------------------------------------------------------------


def test_the_default_throttle_refills_five_attempts_per_fifteen_minutes() -> None:
    throttle = LoginThrottle()
    assert throttle.failures == 5
    assert throttle.rate * 900 == pytest.approx(5)


@pytest.mark.parametrize(("failures", "window"), [(0, 900.0), (5, 0.0), (5, -1.0)])
def test_a_throttle_needs_at_least_one_attempt_and_a_window(failures: int, window: float) -> None:
    with pytest.raises(ValueError, match="login throttle"):
        LoginThrottle(failures=failures, window_seconds=window)


# -- the public schema says what the rules accept --------------------------------------------


def _accepted(rule: Any, raw: str) -> bool:
    try:
        rule(raw)
    except IdentityError:
        return False
    return True


@given(st.text(max_size=120) | st.from_regex(FULL_NAME_PATTERN, fullmatch=True))
def test_a_name_the_schema_allows_is_accepted(raw: str) -> None:
    if re.search(FULL_NAME_PATTERN, raw) and len(raw) <= MAX_NAME_LENGTH:
        assert _accepted(normalise_full_name, raw)


@given(st.text(alphabet="+0123456789 ().-", max_size=30) | st.from_regex(PHONE_PATTERN))
def test_a_phone_number_is_accepted_exactly_when_the_schema_allows_it(raw: str) -> None:
    assert _accepted(normalise_phone, raw) == bool(re.search(PHONE_PATTERN, raw))


@given(st.text(max_size=12) | st.from_regex(LOCALE_PATTERN))
def test_a_locale_is_accepted_exactly_when_the_schema_allows_it(raw: str) -> None:
    assert _accepted(normalise_locale, raw) == bool(re.search(LOCALE_PATTERN, raw))


@given(st.text(max_size=40) | st.from_regex(PASSWORD_PATTERN))
def test_a_password_breaks_the_letter_and_digit_rules_exactly_when_it_misses_the_pattern(
    password: str,
) -> None:
    broken = {"must contain a letter", "must contain a digit"} & set(password_problems(password))
    assert (not broken) == bool(re.search(PASSWORD_PATTERN, password))


@pytest.mark.parametrize(
    ("header", "locale"),
    [
        (None, "zh-CN"),
        ("", "zh-CN"),
        ("en-GB,en;q=0.9", "en-GB"),
        ("fr-FR, en;q=0.5, zh-TW;q=0.8", "zh-TW"),
        ("de, fr;q=0.9", "zh-CN"),
        ("zh-cn", "zh-CN"),
        ("*;q=1, en;q=0", "zh-CN"),
        ("en;q=abc, zh", "zh"),
    ],
)
def test_a_new_accounts_language_is_its_browsers_first_that_marquee_writes_in(
    header: str | None, locale: str
) -> None:
    assert locale_from_accept_language(header) == locale

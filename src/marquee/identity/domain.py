"""Identity's rules, pure: emails, passwords, names, phones, roles and refresh-token families.

Nothing here does I/O or reads a clock: times come in as arguments, so every rule is tested
in microseconds. Errors know nothing of HTTP; ``api.py`` maps them to problem details.
"""

from __future__ import annotations

import enum
import functools
import re
import unicodedata
import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal, NewType

UserId = NewType("UserId", str)
FamilyId = NewType("FamilyId", str)
Email = NewType("Email", str)
Role = Literal["customer", "admin"]
ROLES: Final[tuple[Role, ...]] = ("customer", "admin")

MIN_PASSWORD_LENGTH: Final = 8
# argon2 hashes any length, but a cap keeps one request from buying unbounded work and stays
# far above what password managers generate.
MAX_PASSWORD_LENGTH: Final = 128
MAX_EMAIL_LENGTH: Final = 254
MAX_NAME_LENGTH: Final = 100
DEFAULT_LOCALE: Final = "zh-CN"


# -- errors -------------------------------------------------------------------------------


class IdentityError(Exception):
    """Base of every identity rule violation; the message is fit to show the caller."""


class InvalidEmailError(IdentityError):
    pass


class WeakPasswordError(IdentityError):
    """The password breaks the policy; ``reasons`` lists every rule it breaks."""

    def __init__(self, reasons: tuple[str, ...]) -> None:
        super().__init__("Choose a stronger password: it " + "; ".join(reasons) + ".")
        self.reasons = reasons


class InvalidPhoneError(IdentityError):
    pass


class InvalidNameError(IdentityError):
    pass


class InvalidLocaleError(IdentityError):
    pass


class EmailTakenError(IdentityError):
    pass


class InvalidCredentialsError(IdentityError):
    """Wrong email or wrong password: deliberately one error, so neither can be probed."""


class TooManyAttemptsError(IdentityError):
    """Too many failed sign-ins for one account; try again after ``retry_after`` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__("Too many failed sign-in attempts for this account; try again later.")
        self.retry_after = retry_after


class UserNotFoundError(IdentityError):
    pass


class RefreshTokenError(IdentityError):
    """Base of the reasons a refresh token is refused."""


class RefreshTokenInvalidError(RefreshTokenError):
    pass


class RefreshTokenExpiredError(RefreshTokenError):
    pass


class RefreshTokenRevokedError(RefreshTokenError):
    pass


class RefreshTokenReusedError(RefreshTokenError):
    """A refresh token was presented a second time: its whole family has been revoked."""


# -- values -------------------------------------------------------------------------------


def new_user_id() -> UserId:
    return UserId(uuid.uuid4().hex)


def new_family_id() -> FamilyId:
    return FamilyId(uuid.uuid4().hex)


_LOCAL_PART = re.compile(r"^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$")
_DOMAIN_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$")


def normalise_email(raw: str) -> Email:
    """The canonical form of an email address: trimmed and lower-cased, IDNA domain.

    Accepts the dot-atom addresses people actually use (no quoted local parts, no IP-literal
    domains); the domain needs at least two labels. Raises InvalidEmailError otherwise.
    Lower-casing the local part is a choice: no mainstream provider treats case as distinct,
    and it stops ``Alice@`` and ``alice@`` from being two accounts.
    """
    email = raw.strip().lower()
    if not email or len(email) > MAX_EMAIL_LENGTH:
        raise InvalidEmailError(f"Enter an email address of at most {MAX_EMAIL_LENGTH} characters.")
    local, at, domain = email.rpartition("@")
    if not at or not local or not domain:
        raise InvalidEmailError("Enter an email address such as alice@example.com.")
    if len(local) > 64 or not _LOCAL_PART.match(local):
        raise InvalidEmailError(f"{raw.strip()!r} is not a valid email address.")
    try:
        ascii_domain = domain.encode("idna").decode("ascii")
    except UnicodeError:
        raise InvalidEmailError(f"{raw.strip()!r} has an invalid domain.") from None
    labels = ascii_domain.split(".")
    if (
        len(labels) < 2
        or not all(_DOMAIN_LABEL.match(label) for label in labels)
        or labels[-1].isdigit()
    ):
        raise InvalidEmailError(f"{raw.strip()!r} has an invalid domain.")
    canonical = f"{local}@{ascii_domain}"
    if len(canonical) > MAX_EMAIL_LENGTH:
        raise InvalidEmailError(f"Enter an email address of at most {MAX_EMAIL_LENGTH} characters.")
    return Email(canonical)


# A letter and a digit as regular expressions say them, so that the public schema's pattern
# (PASSWORD_PATTERN) and this policy are one and the same rule.
_LETTER = re.compile(r"[^\W\d_]")
_DIGIT = re.compile(r"\d")
PASSWORD_PATTERN: Final = r"^(?=[\s\S]*[^\W\d_])(?=[\s\S]*\d)"  # noqa: S105


def password_problems(password: str, *, email: str = "") -> tuple[str, ...]:
    """Every rule of the password policy that ``password`` breaks (empty when it is fine).

    The policy: 8 to 128 characters, at least one letter and one digit, not the account's
    email address, and not one of the commonest passwords of public breaches (NIST SP 800-63B
    asks for that check; see ``breached_passwords``).
    """
    problems: list[str] = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters long")
    if len(password) > MAX_PASSWORD_LENGTH:
        problems.append(f"must be at most {MAX_PASSWORD_LENGTH} characters long")
    if not _LETTER.search(password):
        problems.append("must contain a letter")
    if not _DIGIT.search(password):
        problems.append("must contain a digit")
    if email and password.strip().lower() == email.strip().lower():
        problems.append("must not be your email address")
    if password.lower() in breached_passwords():
        problems.append("is one of the commonest passwords in public data breaches")
    return tuple(problems)


@functools.cache
def breached_passwords() -> frozenset[str]:
    """The 30,000 commonest passwords of public breaches, lower case: the list the ``zxcvbn``
    package ships (from the Xato corpus), checked offline. Loaded once, on first use."""
    from zxcvbn.frequency_lists import FREQUENCY_LISTS

    listed: str | list[str] = FREQUENCY_LISTS["passwords"]
    words = listed.split(",") if isinstance(listed, str) else listed
    return frozenset(word.lower() for word in words)


def check_password(password: str, *, email: str = "") -> None:
    """Raise WeakPasswordError naming every broken rule, or return when the password is fine."""
    problems = password_problems(password, email=email)
    if problems:
        raise WeakPasswordError(problems)


_PHONE_SEPARATORS = re.compile(r"[\s().-]")
# What normalise_phone accepts, as one pattern over the text as typed (for the public schema).
PHONE_PATTERN: Final = (
    r"^[\s().-]*(?:(?:\+|0[\s().-]*0)[\s().-]*[1-9](?:[\s().-]*[0-9]){6,14}[\s().-]*)?$"
)
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def normalise_phone(raw: str | None) -> str | None:
    """An E.164 number (``+8613812345678``) from what a person types, or None for no phone.

    Spaces, dots, dashes and brackets are dropped; a leading ``00`` becomes ``+``. The country
    code is required, since a bare local number cannot be dialled from elsewhere.
    """
    if raw is None:
        return None
    phone = _PHONE_SEPARATORS.sub("", raw.strip())
    if not phone:
        return None
    if phone.startswith("00"):
        phone = "+" + phone[2:]
    if not _E164.match(phone):
        raise InvalidPhoneError(
            "Enter the phone number in international form with its country code,"
            " e.g. +8613812345678."
        )
    return phone


def normalise_full_name(raw: str) -> str:
    """A display name: trimmed, inner whitespace collapsed, 1 to 100 characters, printable."""
    name = " ".join(unicodedata.normalize("NFC", raw).split())
    if not name:
        raise InvalidNameError("Enter your full name.")
    if len(name) > MAX_NAME_LENGTH:
        raise InvalidNameError(f"The full name must be at most {MAX_NAME_LENGTH} characters.")
    if any(unicodedata.category(ch) == "Cc" for ch in name):
        raise InvalidNameError("The full name must not contain control characters.")
    return name


_LOCALE = re.compile(r"^([a-z]{2,3})(?:[-_]([A-Za-z]{4}|[A-Za-z]{2}|[0-9]{3}))?$")
LOCALE_PATTERN: Final = r"^\s*[a-z]{2,3}(?:[-_](?:[A-Za-z]{4}|[A-Za-z]{2}|[0-9]{3}))?\s*$"
# A full name as normalise_full_name accepts it: some text, no control character but spaces.
_CONTROL = r"\x00-\x08\x0e-\x1b\x7f-\x84\x86-\x9f"  # control characters but whitespace
FULL_NAME_PATTERN: Final = rf"^[^{_CONTROL}]*[^\s{_CONTROL}][^{_CONTROL}]*$"


def normalise_locale(raw: str) -> str:
    """A language tag such as ``zh-CN`` or ``en``, in its usual case (``zh-cn`` → ``zh-CN``)."""
    match = _LOCALE.match(raw.strip())
    if match is None:
        raise InvalidLocaleError("Use a language tag such as zh-CN or en.")
    language, region = match.groups()
    if region is None:
        return language
    if len(region) == 4:
        return f"{language}-{region.title()}"
    return f"{language}-{region.upper()}"


# The languages Marquee writes to people in, and the tag stored when a client names none.
SUPPORTED_LANGUAGES: Final = frozenset({"zh", "en"})


def locale_from_accept_language(header: str | None) -> str:
    """The locale to keep for a new account from its ``Accept-Language`` header: the client's
    most preferred tag (by ``q``, then order) whose language Marquee writes in, normalised
    (``en-gb`` → ``en-GB``); ``DEFAULT_LOCALE`` when none is (or the header is absent)."""
    ranked: list[tuple[float, int, str]] = []
    for position, item in enumerate((header or "").split(",")[:32]):
        tag, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        if quality <= 0 or not tag.strip():
            continue
        try:
            locale = normalise_locale(tag)
        except InvalidLocaleError:
            continue
        if locale.split("-", 1)[0] in SUPPORTED_LANGUAGES:
            ranked.append((-quality, position, locale))
    return min(ranked)[2] if ranked else DEFAULT_LOCALE


# -- accounts -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class User:
    id: UserId
    email: Email
    password_hash: str
    full_name: str
    phone: str | None
    role: Role
    locale: str
    created_at: datetime
    updated_at: datetime


# -- refresh-token families ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class RefreshRecord:
    """What is stored of one refresh token. Every token issued by rotating another joins its
    family; a login starts a new family."""

    jti: str
    user_id: UserId
    family_id: FamilyId
    issued_at: datetime
    expires_at: datetime
    used_at: datetime | None
    revoked_at: datetime | None


class RefreshVerdict(enum.Enum):
    ROTATE = "rotate"  # mark it used and issue the next pair in the same family
    REUSED = "reused"  # seen before: someone holds a copy, so revoke the whole family
    REVOKED = "revoked"  # its family was logged out or revoked: refuse
    EXPIRED = "expired"  # past its lifetime: refuse


def judge_refresh(record: RefreshRecord, now: datetime) -> RefreshVerdict:
    """What to do with a presented refresh token, given what is stored of it.

    A revoked family stays revoked whatever else is true. A token used before is reuse even
    when it has since expired: an old stolen token is still evidence the family leaked.
    """
    if record.revoked_at is not None:
        return RefreshVerdict.REVOKED
    if record.used_at is not None:
        return RefreshVerdict.REUSED
    if now >= record.expires_at:
        return RefreshVerdict.EXPIRED
    return RefreshVerdict.ROTATE


def refusal(verdict: RefreshVerdict) -> RefreshTokenError:
    """The error to answer for a verdict other than ROTATE."""
    if verdict is RefreshVerdict.REUSED:
        return RefreshTokenReusedError(
            "This refresh token was already used; every session it belongs to has been"
            " signed out. Sign in again."
        )
    if verdict is RefreshVerdict.REVOKED:
        return RefreshTokenRevokedError("This refresh token has been revoked; sign in again.")
    if verdict is RefreshVerdict.EXPIRED:
        return RefreshTokenExpiredError("This refresh token has expired; sign in again.")
    raise ValueError(f"{verdict} is not a refusal")


# -- sign-in throttling -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LoginThrottle:
    """At most ``failures`` failed sign-ins per account in ``window_seconds``.

    Kept as a token bucket in the shared cache: every attempt spends a token, a successful
    sign-in refills the bucket, and tokens come back at ``failures / window_seconds`` a second.
    So ``failures`` wrong passwords in a row lock the account until a token comes back
    (``window_seconds / failures``), and a patient guesser gets ``failures`` tries per window.
    """

    failures: int = 5
    window_seconds: float = 900.0

    def __post_init__(self) -> None:
        if self.failures < 1 or not self.window_seconds > 0:
            raise ValueError("a login throttle needs failures >= 1 and a positive window")

    @property
    def rate(self) -> float:
        return self.failures / self.window_seconds

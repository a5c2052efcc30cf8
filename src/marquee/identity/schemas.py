"""Identity's request and response bodies: the public JSON contract, field for field.

Request bodies refuse unknown fields and wrong types (422); the content rules (email format,
password policy, phone format) live in ``domain.py`` so there is one definition of each. The
length caps here only bound how much text a request can make the service look at.
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from pydantic.config import JsonDict

from marquee.identity.domain import (
    FULL_NAME_PATTERN,
    LOCALE_PATTERN,
    MAX_NAME_LENGTH,
    MAX_PASSWORD_LENGTH,
    MIN_PASSWORD_LENGTH,
    PASSWORD_PATTERN,
    PHONE_PATTERN,
    Role,
    User,
)
from marquee.platform.contract import not_null


class _Request(BaseModel):
    model_config = ConfigDict(extra="forbid")


# What the domain's rules accept, said in the schema too (the rules, not these, decide: they
# answer with their own problem codes, such as weak_password).
_EMAIL: JsonDict = {"format": "email", "maxLength": 254}
_PASSWORD: JsonDict = {
    "minLength": MIN_PASSWORD_LENGTH,
    "maxLength": MAX_PASSWORD_LENGTH,
    "pattern": PASSWORD_PATTERN,
    "description": "At least one letter and one digit; not a password common in breaches.",
}
_FULL_NAME: JsonDict = {"maxLength": MAX_NAME_LENGTH, "pattern": FULL_NAME_PATTERN}
_PHONE: JsonDict = {
    "pattern": PHONE_PATTERN,
    "description": "International form, e.g. +8613812345678.",
}
_LOCALE: JsonDict = {"pattern": LOCALE_PATTERN}


class RegisterRequest(_Request):
    email: str = Field(max_length=320, examples=["alice@example.com"], json_schema_extra=_EMAIL)
    password: str = Field(max_length=1024, examples=["SecurePass123"], json_schema_extra=_PASSWORD)
    full_name: str = Field(max_length=400, examples=["Alice Wang"], json_schema_extra=_FULL_NAME)
    phone: str | None = Field(
        default=None, max_length=40, examples=["+8613812345678"], json_schema_extra=_PHONE
    )


class LoginRequest(_Request):
    email: str = Field(max_length=320, examples=["alice@example.com"])
    password: str = Field(max_length=1024, examples=["SecurePass123"])


class RefreshRequest(_Request):
    refresh_token: str = Field(max_length=4096)


class LogoutRequest(_Request):
    refresh_token: str = Field(max_length=4096)


class UpdateProfileRequest(_Request):
    """Only the fields present change; ``phone: null`` removes the phone number, and
    ``full_name`` and ``locale`` may be left out but not cleared."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=not_null("full_name", "locale"))

    full_name: str | None = Field(default=None, max_length=400, json_schema_extra=_FULL_NAME)
    phone: str | None = Field(default=None, max_length=40, json_schema_extra=_PHONE)
    locale: str | None = Field(
        default=None, max_length=35, examples=["zh-CN"], json_schema_extra=_LOCALE
    )

    @field_validator("full_name", "locale")
    @classmethod
    def _not_null(cls, value: str | None) -> str:
        # Runs only for fields the body names (defaults are not validated): null is refused.
        if value is None:
            raise ValueError("may be left out but not null")
        return value


class TokenResponse(BaseModel):
    """The seed's ``{"user_id", "access_token", "refresh_token"}`` plus how to use them."""

    user_id: str
    access_token: str
    refresh_token: str
    token_type: Literal["Bearer"] = "Bearer"  # noqa: S105 - a scheme name, not a secret
    expires_in: int = Field(description="Seconds until the access token expires.")


class UserProfile(BaseModel):
    user_id: str
    email: str
    full_name: str
    phone: str | None
    role: Role
    locale: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, user: User) -> UserProfile:
        return cls(
            user_id=user.id,
            email=user.email,
            full_name=user.full_name,
            phone=user.phone,
            role=user.role,
            locale=user.locale,
            created_at=user.created_at,
            updated_at=user.updated_at,
        )


class UserPage(BaseModel):
    users: list[UserProfile]
    total: int
    limit: int
    offset: int

from pathlib import Path

import pytest

from marquee.platform.settings import Settings, SettingsError, load_settings


def test_every_setting_has_an_embedded_default() -> None:
    settings = Settings()
    assert settings.port == 8000
    assert settings.host == "127.0.0.1"
    assert settings.cache_url == "memory://"
    assert settings.broker_url == "memory://"
    assert settings.payment_window_seconds == 900
    assert settings.rate_limit_per_second == 10


def test_each_service_gets_its_own_sqlite_file_by_default(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path)
    assert settings.database_url_for("catalog") == f"sqlite+aiosqlite:///{tmp_path}/catalog.db"
    assert settings.database_url_for("booking") != settings.database_url_for("catalog")


def test_a_shared_sqlite_url_is_split_into_sibling_files() -> None:
    settings = Settings(database_url="sqlite+aiosqlite:////srv/m/marquee.db")
    assert settings.database_url_for("identity") == "sqlite+aiosqlite:////srv/m/marquee-identity.db"


def test_postgres_is_shared_and_a_service_may_override_it() -> None:
    settings = Settings(
        database_url="postgresql+asyncpg://u@db/marquee",
        booking_database_url="postgresql+asyncpg://u@other/booking",
    )
    assert settings.database_url_for("catalog") == "postgresql+asyncpg://u@db/marquee"
    assert settings.database_url_for("booking") == "postgresql+asyncpg://u@other/booking"


def test_a_mistyped_setting_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_PORT", "eighty")
    with pytest.raises(SettingsError, match=r"^MARQUEE_PORT: "):
        load_settings()


def test_an_unknown_database_scheme_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_DATABASE_URL", "mysql://localhost/x")
    with pytest.raises(SettingsError, match="MARQUEE_DATABASE_URL"):
        load_settings()


def test_trusted_proxies_are_comma_separated_networks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_TRUSTED_PROXIES", "10.0.0.0/8, 127.0.0.1")
    assert [str(n) for n in load_settings().trusted_networks] == ["10.0.0.0/8", "127.0.0.1/32"]
    monkeypatch.setenv("MARQUEE_TRUSTED_PROXIES", "not-an-ip")
    with pytest.raises(SettingsError, match="MARQUEE_TRUSTED_PROXIES"):
        load_settings()


def test_settings_refuse_to_change_after_being_read() -> None:
    settings = Settings()
    with pytest.raises(Exception, match="frozen"):
        settings.port = 1  # type: ignore[misc]


def test_the_jwt_secret_is_generated_once_and_kept(tmp_path: Path) -> None:
    first = Settings(data_dir=tmp_path).resolved_jwt_secret()
    assert len(first) >= 32
    assert Settings(data_dir=tmp_path).resolved_jwt_secret() == first
    assert Settings(data_dir=tmp_path, jwt_secret="given").resolved_jwt_secret() == "given"


def test_secrets_come_from_files_named_like_the_variables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    (tmp_path / "MARQUEE_JWT_SECRET").write_text("from-a-file-" + "s" * 32 + "\n")
    (tmp_path / "MARQUEE_DATABASE_URL").write_text("postgresql+asyncpg://u:p@db/marquee")
    monkeypatch.setenv("MARQUEE_SECRETS_DIR", str(tmp_path))
    monkeypatch.setenv("MARQUEE_DATABASE_URL", "postgresql+asyncpg://env@db/marquee")

    settings = load_settings()

    assert settings.jwt_secret == "from-a-file-" + "s" * 32
    assert settings.database_url == "postgresql+asyncpg://env@db/marquee"  # the environment wins


def test_a_missing_secrets_dir_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MARQUEE_SECRETS_DIR", "/nonexistent/secrets")

    with pytest.raises(SettingsError, match="MARQUEE_SECRETS_DIR"):
        load_settings()


def test_the_database_pool_gives_up_before_the_gateway_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("MARQUEE_DB_POOL_TIMEOUT_SECONDS", "15")

    with pytest.raises(SettingsError, match="MARQUEE_DB_POOL_TIMEOUT_SECONDS"):
        load_settings()

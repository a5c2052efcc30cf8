"""Mailer and SMS adapters chosen by URL, and the file outboxes a person can open."""

from __future__ import annotations

from email import message_from_bytes, policy
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path

import pytest
from pydantic import SecretStr

from marquee.notification.config import NotificationConfig
from marquee.notification.mailers import FileMailer, SmtpMailer, file_stem, open_mailer
from marquee.notification.rendering import SmsText
from marquee.notification.sms import FileSms, LogSms, open_sms
from marquee.platform.settings import Settings


def message(message_id: str = "<evt-1.email@marquee.test>", body: str = "您好") -> EmailMessage:
    msg = EmailMessage(policy=policy.SMTP)
    msg["Subject"] = "【Marquee】订单确认"
    msg["From"] = "Marquee <tickets@marquee.test>"
    msg["To"] = "alice@example.com"
    msg["Message-ID"] = message_id
    msg.set_content(body)
    return msg


def listing(directory: Path) -> list[Path]:
    return sorted(directory.iterdir())


def test_the_default_mailer_is_a_file_outbox_under_the_data_dir(tmp_path: Path) -> None:
    mailer = open_mailer("file://", data_dir=tmp_path)
    assert isinstance(mailer, FileMailer)
    assert mailer.directory == tmp_path / "outbox"


def test_a_file_url_with_a_path_names_the_outbox_directory(tmp_path: Path) -> None:
    mailer = open_mailer(f"file://{tmp_path}/mail", data_dir=Path("elsewhere"))
    assert isinstance(mailer, FileMailer)
    assert mailer.directory == tmp_path / "mail"


def test_an_smtp_url_gives_host_port_starttls_and_percent_encoded_credentials() -> None:
    mailer = open_mailer(
        "smtp://mailer%40example.com:p%40ss%3Aword@mail.example.com:2525?starttls=1&timeout=5",
        data_dir=Path(),
    )
    assert mailer == SmtpMailer(
        host="mail.example.com",
        port=2525,
        username="mailer@example.com",
        password="p@ss:word",
        use_tls=False,
        start_tls=True,
        timeout=5.0,
    )
    assert "p@ss" not in repr(mailer)
    assert "p@ss" not in mailer.describe()


def test_smtps_is_implicit_tls_on_port_465_by_default() -> None:
    mailer = open_mailer("smtps://user:secret@mail.example.com", data_dir=Path())
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.port, mailer.use_tls, mailer.start_tls) == (465, True, False)


def test_required_starttls_defaults_to_the_submission_port() -> None:
    mailer = open_mailer("smtp://mail.example.com?starttls=yes", data_dir=Path())
    assert isinstance(mailer, SmtpMailer)
    assert (mailer.port, mailer.start_tls) == (587, True)


def test_plain_smtp_upgrades_to_tls_only_when_offered() -> None:
    mailer = open_mailer("smtp://127.0.0.1:25", data_dir=Path())
    assert isinstance(mailer, SmtpMailer)
    assert mailer.start_tls is None


@pytest.mark.parametrize(
    ("url", "complaint"),
    [
        ("ftp://mail.example.com", "unknown mailer"),
        ("smtp://", "needs a host"),
        ("smtp://mail.example.com?starttls=maybe", "yes/no"),
        ("smtps://mail.example.com?starttls=1", "already TLS"),
        ("smtp://mail.example.com?timeout=0", "positive"),
        ("smtp://mail.example.com:99999", "port"),
    ],
)
def test_an_unusable_mailer_url_is_refused_with_the_reason(url: str, complaint: str) -> None:
    with pytest.raises(ValueError, match=complaint):
        open_mailer(url, data_dir=Path())


async def test_the_file_outbox_writes_one_standard_eml_file_per_message(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path / "outbox")
    await mailer.send(message("<evt-1.email@marquee.test>"))
    await mailer.send(message("<evt-2.email@marquee.test>"))
    files = sorted(p.name for p in (tmp_path / "outbox").iterdir())
    assert files == ["evt-1.email.eml", "evt-2.email.eml"]
    parsed = message_from_bytes(
        (tmp_path / "outbox" / files[0]).read_bytes(), policy=policy.default
    )
    assert parsed["Subject"] == "【Marquee】订单确认"
    assert isinstance(parsed, EmailMessage)
    body = parsed.get_body(("plain",))
    assert body is not None
    assert body.get_content().strip() == "您好"


async def test_the_same_message_sent_twice_is_one_file_in_the_outbox(tmp_path: Path) -> None:
    mailer = FileMailer(tmp_path)
    await mailer.send(message(body="first"))
    await mailer.send(message(body="second"))
    files = listing(tmp_path)
    assert len(files) == 1
    content = files[0].read_bytes()
    assert b"second" in content
    assert b"first" not in content


def test_a_message_id_that_tries_to_leave_the_directory_stays_inside() -> None:
    assert "/" not in file_stem("<../../etc/passwd@x>")
    assert file_stem("<../../etc/passwd@x>") == "etc_passwd"


async def test_sms_go_to_text_files_under_the_data_dir_by_default(tmp_path: Path) -> None:
    sender = open_sms("file://", data_dir=tmp_path)
    assert isinstance(sender, FileSms)
    sms = SmsText(
        to="+8613812345678", text="【Marquee】支付成功", message_id="<evt-1.sms@x>", request_id="r1"
    )
    await sender.send(sms)
    await sender.send(sms)
    files = list((tmp_path / "sms").iterdir())
    assert [f.name for f in files] == ["evt-1.sms.txt"]
    content = files[0].read_text(encoding="utf-8")
    assert "To: +8613812345678" in content
    assert "X-Request-ID: r1" in content
    assert content.rstrip().endswith("【Marquee】支付成功")


def test_sms_can_go_to_the_log_instead() -> None:
    assert isinstance(open_sms("log://", data_dir=Path()), LogSms)
    with pytest.raises(ValueError, match="unknown SMS sender"):
        open_sms("twilio://account", data_dir=Path())


def test_configuration_falls_back_to_defaults_and_the_data_dir_from_settings(
    settings: Settings,
) -> None:
    config = NotificationConfig.from_settings(settings)
    assert config.mailer_url == "file://"
    assert config.sms_url == "file://"
    assert config.data_dir == settings.data_dir
    assert config.max_attempts == 8
    assert config.public_url == f"http://{settings.host}:{settings.port}"


def test_a_configuration_that_could_never_deliver_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_attempts"):
        NotificationConfig(data_dir=tmp_path, max_attempts=0)


class MailSettings(Settings):
    """Settings with the notification fields, as the platform's Settings will declare them."""

    mailer_url: SecretStr = SecretStr("smtp://user:secret@mail.example.com:2525")
    mail_from: str = "票务 <tickets@example.com>"
    sms_url: str = "log://"
    public_url: str = "https://tickets.example.com"
    notification_max_attempts: int = 3
    notification_retry_base_seconds: float = 2.0
    notification_retry_cap_seconds: float = 60.0
    notification_poll_interval_seconds: float = 0.5
    notification_timezone: str = "UTC"


def test_configuration_reads_the_notification_settings_by_name(tmp_path: Path) -> None:
    config = NotificationConfig.from_settings(MailSettings(data_dir=tmp_path))
    assert config.mailer_url == "smtp://user:secret@mail.example.com:2525"
    assert config.mail_from == "票务 <tickets@example.com>"
    assert config.sms_url == "log://"
    assert config.public_url == "https://tickets.example.com"
    assert (config.max_attempts, config.retry_base_seconds, config.retry_cap_seconds) == (3, 2, 60)
    assert config.poll_interval_seconds == 0.5
    assert config.timezone == "UTC"


async def test_an_internationalised_address_is_written_as_utf8_not_as_encoded_words(
    tmp_path: Path,
) -> None:
    mailer = FileMailer(tmp_path)
    international = message()
    del international["To"]
    international["To"] = Address(display_name="王小明", username="小明", domain="例子.cn")
    await mailer.send(international)
    await mailer.send(message("<evt-2.email@marquee.test>"))
    [utf8, plain] = listing(tmp_path)
    assert "To: 王小明 <小明@例子.cn>" in utf8.read_bytes().decode("utf-8")
    headers = plain.read_bytes().split(b"\r\n\r\n", 1)[0]
    assert headers.isascii()

"""Settings read once from the environment or a ``.env`` file into one typed object.

A missing or malformed setting stops start-up with one clear line naming it (see
:func:`load_settings`)."""

from __future__ import annotations

import ipaddress
import re
from datetime import time
from pathlib import Path
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import Field, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class ConfigError(Exception):
    """Raised with a one-line, human readable message naming the bad setting."""


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore",
                                      case_sensitive=False)

    data_dir: Path = Path("./data")
    database_url: str = ""

    telegram_bot_token: str = ""
    telegram_base_url: str = "https://api.telegram.org/bot"
    telegram_base_file_url: str = "https://api.telegram.org/file/bot"
    telegram_webhook_url: str = ""
    telegram_webhook_secret: str = ""
    telegram_concurrent_updates: int = Field(default=64, ge=1, le=1024)
    telegram_max_download_mb: int = Field(default=20, ge=1, le=2000)
    telegram_http_client: Literal["aiohttp", "httpx"] = "aiohttp"  # see bot/channels/telegram_http.py

    zalo_oa_app_id: str = ""
    zalo_oa_app_secret: str = ""  # "secret_key" header of the token refresh call
    zalo_oa_secret_key: str = ""  # OA secret key: verifies X-ZEvent-Signature on webhooks
    zalo_oa_access_token: str = ""
    zalo_oa_refresh_token: str = ""
    zalo_oa_api_base: str = "https://openapi.zalo.me"
    zalo_oa_oauth_base: str = "https://oauth.zaloapp.com"
    zalo_oa_webhook_path: str = "/zalo/oa/webhook"
    zalo_oa_request_user_info: bool = False  # the OA has Zalo's permission to ask for phone numbers
    zalo_oa_request_image_url: str = ""  # picture on the request_user_info card (https, JPG/PNG)

    zalo_bot_token: str = ""
    zalo_bot_api_base: str = "https://bot-api.zaloplatforms.com"
    zalo_bot_webhook_url: str = ""
    zalo_bot_webhook_secret: str = ""

    web_host: str = "127.0.0.1"
    web_port: int = Field(default=8080, ge=0, le=65535)
    web_chat_enabled: bool = True
    web_chat_password: str = ""
    public_base_url: str = ""
    #: serve the web console (/admin) over plain http on a non-loopback WEB_HOST (behind a trusted network)
    console_allow_http: bool = False

    default_locale: str = "vi"
    timezone: str = "Asia/Ho_Chi_Minh"

    conversation_ttl_hours: int = Field(default=24, ge=1, le=24 * 30)
    invite_ttl_hours: int = Field(default=72, ge=1, le=24 * 90)
    max_text_length: int = Field(default=4000, ge=100, le=100_000)
    log_level: str = "INFO"

    approval_remind_after_minutes: int = Field(default=240, ge=1)
    approval_escalate_after_minutes: int = Field(default=1440, ge=1)
    scheduler_tick_seconds: int = Field(default=30, ge=1, le=3600)
    quiet_hours: str = "21:00-06:30"

    footage_max_minutes: int = Field(default=30, ge=1, le=240)
    clip_retention_days: int = Field(default=30, ge=1, le=3650)
    clip_size_cap_mb: int = Field(default=50, ge=1, le=2000)
    recording_retention_days: int = Field(default=30, ge=1, le=3650)

    @field_validator("default_locale")
    @classmethod
    def _locale(cls, v: str) -> str:
        v = v.strip().lower()
        if v not in ("vi", "en"):
            raise ValueError("must be 'vi' or 'en'")
        return v

    @field_validator("quiet_hours")
    @classmethod
    def _quiet(cls, v: str) -> str:
        v = v.strip()
        if v in ("", "off", "none"):
            return ""
        m = re.fullmatch(r"(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})", v)
        if not m or int(m[1]) > 23 or int(m[3]) > 23 or int(m[2]) > 59 or int(m[4]) > 59:
            raise ValueError("must look like 21:00-06:30 (or 'off')")
        return f"{int(m[1]):02d}:{m[2]}-{int(m[3]):02d}:{m[4]}"

    def quiet_window(self) -> tuple[time, time] | None:
        """(start, end) of the quiet hours in local time, or None when switched off."""
        if not self.quiet_hours:
            return None
        a, b = self.quiet_hours.split("-")
        return time.fromisoformat(a), time.fromisoformat(b)

    @field_validator("timezone")
    @classmethod
    def _tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"unknown time zone {v!r}") from exc
        return v

    @field_validator("telegram_webhook_url", "public_base_url", "zalo_bot_webhook_url")
    @classmethod
    def _url(cls, v: str) -> str:
        v = v.strip()
        if v and not v.startswith(("https://", "http://")):
            raise ValueError("must start with https://")
        return v

    @field_validator("telegram_bot_token")
    @classmethod
    def _token(cls, v: str) -> str:
        v = v.strip()
        if v and (":" not in v or " " in v):
            raise ValueError("does not look like a bot token (expected '123456:ABC...')")
        return v

    @model_validator(mode="after")
    def _combined(self) -> Settings:
        if self.telegram_webhook_url and not self.telegram_bot_token:
            raise ValueError("TELEGRAM_WEBHOOK_URL needs TELEGRAM_BOT_TOKEN")
        if self.telegram_webhook_url and len(self.telegram_webhook_secret) < 16:
            raise ValueError("TELEGRAM_WEBHOOK_SECRET must be set (at least 16 characters) in webhook mode")
        if self.telegram_webhook_secret and not all(
                c.isalnum() or c in "_-" for c in self.telegram_webhook_secret):
            raise ValueError("TELEGRAM_WEBHOOK_SECRET may only contain A-Z, a-z, 0-9, _ and -")
        if self.zalo_oa_app_id and not self.zalo_oa_secret_key:
            raise ValueError("ZALO_OA_SECRET_KEY is needed to verify Zalo OA webhooks")
        if self.zalo_bot_webhook_url and not (8 <= len(self.zalo_bot_webhook_secret) <= 256):
            raise ValueError("ZALO_BOT_WEBHOOK_SECRET must be 8-256 characters in webhook mode")
        if self.approval_escalate_after_minutes <= self.approval_remind_after_minutes:
            raise ValueError("APPROVAL_ESCALATE_AFTER_MINUTES must be longer than APPROVAL_REMIND_AFTER_MINUTES")
        if self.web_chat_enabled and not _is_loopback(self.web_host) and not self.web_chat_password:
            raise ValueError("WEB_HOST is not a loopback address: set WEB_CHAT_PASSWORD "
                             "or WEB_CHAT_ENABLED=false")
        return self

    # -- derived values -------------------------------------------------------------------------
    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            url = self.database_url
            if url.startswith("postgres://"):
                url = "postgresql+psycopg://" + url[len("postgres://"):]
            elif url.startswith("postgresql://"):
                url = "postgresql+psycopg://" + url[len("postgresql://"):]
            return url
        return f"sqlite:///{(self.data_dir / 'school.db').resolve()}"

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @property
    def media_dir(self) -> Path:
        return self.data_dir / "media"


def _is_loopback(host: str) -> bool:
    if host in ("localhost", ""):
        return host == "localhost"
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def load_settings(**overrides: object) -> Settings:
    """Build the settings; turn any validation problem into one line naming the setting."""
    try:
        return Settings(**overrides)  # type: ignore[arg-type]
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = err.get("loc") or ()
        name = str(loc[0]).upper() if loc else "configuration"
        msg = err.get("msg", "invalid value").removeprefix("Value error, ")
        if not loc:
            raise ConfigError(f"Invalid configuration: {msg}") from None
        raise ConfigError(f"Invalid setting {name}: {msg}") from None

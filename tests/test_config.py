"""Settings: defaults, the .env file, and start-up refusing bad values with one line naming them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.config import ConfigError, Settings, load_settings

ROOT = Path(__file__).resolve().parent.parent
SETTING_NAMES = sorted(name.upper() for name in Settings.model_fields)


@pytest.fixture
def clean_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """No setting from the environment, and a working directory without a .env file."""
    for key in list(os.environ):
        if key.upper() in SETTING_NAMES:
            monkeypatch.delenv(key, raising=False)
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_defaults(clean_env: Path) -> None:
    s = load_settings()
    assert s.data_dir == Path("./data")
    assert s.effective_database_url == f"sqlite:///{(clean_env / 'data' / 'school.db').resolve()}"
    assert (s.web_host, s.web_port, s.web_chat_enabled) == ("127.0.0.1", 8080, True)
    assert s.default_locale == "vi"
    assert s.timezone == "Asia/Ho_Chi_Minh" and str(s.tz) == "Asia/Ho_Chi_Minh"
    assert s.telegram_bot_token == "" and s.telegram_webhook_url == ""
    assert s.telegram_base_url == "https://api.telegram.org/bot"
    assert s.conversation_ttl_hours == 24
    assert s.media_dir == Path("./data") / "media"


def test_env_file_is_read_and_the_environment_wins(clean_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (clean_env / ".env").write_text(
        "# a comment\n"
        "WEB_PORT=9090\n"
        "TIMEZONE=Asia/Bangkok\n"
        "DEFAULT_LOCALE=EN\n"
        "DATABASE_URL=postgres://school@db.example:5432/school\n"
        "TELEGRAM_BOT_TOKEN=123456:ABCdef_ghi\n", encoding="utf-8")
    s = load_settings()
    assert s.web_port == 9090
    assert s.timezone == "Asia/Bangkok"
    assert s.default_locale == "en"
    assert s.effective_database_url == "postgresql+psycopg://school@db.example:5432/school"
    assert s.telegram_bot_token == "123456:ABCdef_ghi"
    monkeypatch.setenv("WEB_PORT", "9191")
    assert load_settings().web_port == 9191


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "school.example", "::"])
def test_public_web_host_needs_a_password(clean_env: Path, host: str) -> None:
    with pytest.raises(ConfigError, match="WEB_HOST .*WEB_CHAT_PASSWORD"):
        load_settings(web_host=host)
    assert load_settings(web_host=host, web_chat_password="a long passphrase").web_host == host
    assert load_settings(web_host=host, web_chat_enabled=False).web_chat_enabled is False


@pytest.mark.parametrize("host", ["127.0.0.1", "localhost", "::1"])
def test_loopback_web_host_needs_no_password(clean_env: Path, host: str) -> None:
    assert load_settings(web_host=host).web_host == host


def test_webhook_secret_rules(clean_env: Path) -> None:
    hook = {"telegram_bot_token": "123456:ABC", "telegram_webhook_url": "https://bot.example/tg"}
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        load_settings(**hook, telegram_webhook_secret="short")
    with pytest.raises(ConfigError, match="TELEGRAM_WEBHOOK_SECRET"):
        load_settings(**hook, telegram_webhook_secret="has spaces and is long enough")
    assert load_settings(**hook, telegram_webhook_secret="A" * 32).telegram_webhook_secret == "A" * 32


# -- the command line refuses bad settings --------------------------------------------------------
def _migrate(tmp_path: Path, env: dict[str, str], dotenv: str | None = None) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k.upper() not in SETTING_NAMES}
    clean["DATA_DIR"] = str(tmp_path / "data")
    clean.update(env)
    if dotenv is not None:
        (tmp_path / ".env").write_text(dotenv, encoding="utf-8")
    return subprocess.run([sys.executable, str(ROOT / "main.py"), "migrate"], cwd=tmp_path, env=clean,
                          capture_output=True, text=True, timeout=120)


BAD = [
    ({"WEB_PORT": "eighty"}, "WEB_PORT"),
    ({"WEB_PORT": "70000"}, "WEB_PORT"),
    ({"TIMEZONE": "Mars/Olympus_Mons"}, "TIMEZONE"),
    ({"TELEGRAM_BOT_TOKEN": "not a token"}, "TELEGRAM_BOT_TOKEN"),
    ({"TELEGRAM_BOT_TOKEN": "123456:ABCdef", "TELEGRAM_WEBHOOK_URL": "https://bot.example/tg"},
     "TELEGRAM_WEBHOOK_SECRET"),
    ({"WEB_HOST": "0.0.0.0"}, "WEB_CHAT_PASSWORD"),
]


@pytest.mark.parametrize(("env", "name"), BAD, ids=[b[1] + "-" + "-".join(b[0].values()) for b in BAD])
def test_bad_setting_stops_migrate_with_one_line(tmp_path: Path, env: dict[str, str], name: str) -> None:
    res = _migrate(tmp_path, env)
    assert res.returncode == 2, res.stderr
    lines = [ln for ln in (res.stdout + res.stderr).splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert name in lines[0]
    assert "Traceback" not in lines[0]
    assert not (tmp_path / "data").exists()  # nothing was started


def test_bad_setting_in_env_file_is_named(tmp_path: Path) -> None:
    res = _migrate(tmp_path, {}, dotenv="WEB_PORT=8080\nTIMEZONE=Asia/Hanoi_City\n")
    assert res.returncode == 2
    assert [ln for ln in res.stderr.splitlines() if ln.strip()] == [
        "Invalid setting TIMEZONE: unknown time zone 'Asia/Hanoi_City'"]


def test_token_is_not_echoed(tmp_path: Path) -> None:
    secret = "123456:" + "S3cr3tV4lue" * 3
    res = _migrate(tmp_path, {"TELEGRAM_BOT_TOKEN": secret, "TELEGRAM_WEBHOOK_URL": "https://bot.example/tg"})
    assert res.returncode == 2
    assert "S3cr3tV4lue" not in res.stdout + res.stderr


def test_good_settings_migrate(tmp_path: Path) -> None:
    res = _migrate(tmp_path, {"WEB_PORT": "8081", "TIMEZONE": "Asia/Ho_Chi_Minh"})
    assert res.returncode == 0, res.stderr
    assert (tmp_path / "data" / "school.db").exists()


# -- every setting is documented ----------------------------------------------------------------------
@pytest.mark.parametrize("doc", [".env.example", "README.md"])
def test_every_setting_is_documented(doc: str) -> None:
    text = (ROOT / doc).read_text(encoding="utf-8")
    missing = [n for n in SETTING_NAMES if not re.search(rf"\b{n}\b", text)]
    assert missing == [], f"{doc} does not mention {missing}"

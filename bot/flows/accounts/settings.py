"""Per-school account settings (``School.settings["accounts"]``), declared once as
:class:`AccountSettings`; read them with ``AccountSettings.of(school)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field, field_validator

from bot.i18n import N_
from bot.settings import SettingProblem, WorkflowSettings

DEFAULT_DELETE_MINUTES = 10
MAX_DELETE_MINUTES = 24 * 60

#: The built-in systems as stored (``name`` empty: the catalogue's name is shown).
DEFAULT_SYSTEM_SETTINGS: list[dict[str, Any]] = [
    {"key": "email", "name": "", "sensitive": False},
    {"key": "school_mgmt", "name": "", "sensitive": True},
    {"key": "sector_db", "name": "", "sensitive": True},
    {"key": "equipment", "name": "", "sensitive": False},
    {"key": "portal", "name": "", "sensitive": False},
]


class AccountSettings(WorkflowSettings):
    section = "accounts"

    systems: list[dict[str, Any]] = Field(
        default=DEFAULT_SYSTEM_SETTINGS, title=N_("The school's systems"),
        description=N_("A JSON list of systems with “key”, “name” and “sensitive”; resetting a password of a "
                       "sensitive system needs BGH approval. Easier: python main.py account-systems."))
    password_delete_minutes: int = Field(
        default=DEFAULT_DELETE_MINUTES, ge=1, le=MAX_DELETE_MINUTES, strict=False,
        title=N_("Minutes a temporary password stays in the chats"),
        description=N_("The messages with a temporary password are deleted after this time."))

    @field_validator("systems", mode="before")
    @classmethod
    def _skip_bad_entries(cls, value: Any) -> Any:
        """Entries that are not a table with a key are skipped (reported by :meth:`partial_problems`)."""
        return [item for item in value if _is_system(item)] if isinstance(value, list) else value

    @classmethod
    def partial_problems(cls, raw: Mapping[str, Any]) -> list[SettingProblem]:
        items = raw.get("systems")
        if not isinstance(items, list):
            return []
        return [SettingProblem(f"{cls.section}.systems.{i}", item, None, N_("must be a table with a “key”"))
                for i, item in enumerate(items) if not _is_system(item)]


def _is_system(item: Any) -> bool:
    return isinstance(item, dict) and bool(str(item.get("key") or "").strip())

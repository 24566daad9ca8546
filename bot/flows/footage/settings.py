"""Per-school footage settings (``School.settings["footage"]``), declared once as
:class:`FootageSettings`; read them with ``FootageSettings.of(school)``.

Before these settings had a section they were top-level keys (``footage_direct_extract``,
``footage_watermark``); a school that still has them keeps them (they are read when the section
does not set the value, and moved into it at the next save)."""

from __future__ import annotations

from pydantic import Field

from bot.i18n import N_
from bot.settings import WorkflowSettings


class FootageSettings(WorkflowSettings):
    section = "footage"
    legacy_keys = {"direct_extract": "footage_direct_extract", "watermark": "footage_watermark"}

    direct_extract: bool = Field(
        default=False, title=N_("Let authorised staff cut clips without approval"),
        description=N_("The principal, vice principals, the head of the guards and IT get their clip at once; "
                       "the request is still recorded and audited."))
    watermark: bool = Field(
        default=False, title=N_("Watermark clips"),
        description=N_("Burn the requester's name and the time into every clip (slower: the clip is re-encoded)."))

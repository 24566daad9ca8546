"""Per-school incident settings (``School.settings["incidents"]``), declared once as
:class:`IncidentSettings`; read them with ``IncidentSettings.of(school)``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import AfterValidator, Field, field_validator

from bot.i18n import N_
from bot.settings import SettingProblem, WorkflowSettings
from storage.models import School

#: Who gets the cards of each incident group by default (role keys, ``bgh``, ``camera_unit``,
#: ``dept_head``, ``person:<id>``); a school overrides any group in ``routes``.
DEFAULT_ROUTES: dict[str, list[str]] = {
    "security": ["guard_lead", "bgh"],
    "camera": ["camera_unit", "guard_lead", "it"],
    "it": ["it", "principal"],
    "equipment": ["equipment", "dept_head"],
    "other": ["guard_lead", "principal"],
}


def _no_blanks(values: list[str]) -> list[str]:
    return [v for v in values if v.strip()]


#: A list of names (areas, roles, systems): blank entries are dropped.
Names = Annotated[list[str], AfterValidator(_no_blanks)]


class IncidentSettings(WorkflowSettings):
    """Area and system names are the school's own data (shown as they are), not interface text."""

    section = "incidents"

    areas: Names = Field(
        default=["Cổng chính", "Cổng phụ", "Sân trường", "Nhà xe", "Hành lang", "Phòng học",
                 "Phòng máy tính", "Thư viện", "Nhà ăn", "Phòng bảo vệ"],
        title=N_("Places offered in an incident report"),
        description=N_("The school's areas shown as buttons (the first ones) and recognised in a guard's caption."))
    routes: dict[str, list[str]] = Field(
        default=DEFAULT_ROUTES,
        title=N_("Who receives each kind of incident"),
        description=N_("Per group (security, camera, it, equipment, other): role keys, bgh, camera_unit, "
                       "dept_head or person:ID. Groups not given keep their default."))
    urgent_to: Names = Field(
        default=["bgh"], title=N_("Also told of urgent incidents"),
        description=N_("Role keys (or bgh) added to the recipients of an urgent report."))
    quick_roles: Names = Field(
        default=["guard", "guard_lead"], title=N_("Who reports by just sending a photo"),
        description=N_("Role keys whose photo, video or voice note sent outside a conversation opens a report."))
    urgent_escalate_minutes: int = Field(
        default=10, gt=0, le=24 * 60, title=N_("Minutes before an urgent incident is passed up"),
        description=N_("An urgent incident nobody acknowledged goes to the principal, then to all of BGH."))
    normal_escalate_hours: int = Field(
        default=24, gt=0, le=30 * 24, title=N_("Hours before a normal incident is passed up"),
        description=N_("A normal incident nobody acknowledged goes to the principal, then to all of BGH."))
    hold_normal_at_night: bool = Field(
        default=True, title=N_("Hold normal reports during quiet hours"),
        description=N_("Normal reports made at night are delivered when the quiet hours end; urgent ones never wait."))
    max_attachments: int = Field(
        default=10, gt=0, le=100, title=N_("Most photos and videos per report"))
    authority: str = Field(
        default="Phòng Giáo dục và Đào tạo", title=N_("Authority the written report is addressed to"))
    authority_it: str = Field(
        default="Sở Giáo dục và Đào tạo", title=N_("Authority for IT incident reports"))
    parent_agency: str = Field(
        default="", title=N_("Parent agency in the report's header"),
        description=N_("Printed above the school's name, e.g. UBND PHƯỜNG THƯỢNG THANH; empty: left out."))
    report_place: str = Field(
        default="", title=N_("Place in the report's date line"),
        description=N_("e.g. Long Biên; empty: dots to fill in by hand."))
    doc_code: str = Field(
        default="", title=N_("Code in the report's number"),
        description=N_("The part after “BC-” in “Số: 01/BC-…”; empty: made from the school's short name."))
    outage_systems: Names = Field(
        default=["Thư điện tử công vụ", "Cổng thông tin điện tử", "Phần mềm quản lý trường học",
                 "Mạng Internet / Wi-Fi", "Hệ thống camera", "Cơ sở dữ liệu ngành"],
        title=N_("Systems offered when announcing an interruption"),
        description=N_("The first twelve are shown as buttons in /ngungdichvu."))

    @field_validator("routes", mode="before")
    @classmethod
    def _routes_over_defaults(cls, value: Any) -> Any:
        """The groups given (each a list of tokens) over the default routes; a group whose value is
        not a list of tokens keeps its default (reported by :meth:`partial_problems`)."""
        if not isinstance(value, dict):
            return value
        out = {g: list(tokens) for g, tokens in DEFAULT_ROUTES.items()}
        out.update({str(g): list(tokens) for g, tokens in value.items() if _is_route(tokens)})
        return out

    @classmethod
    def partial_problems(cls, raw: Mapping[str, Any]) -> list[SettingProblem]:
        routes = raw.get("routes")
        if not isinstance(routes, dict):
            return []
        return [SettingProblem(f"{cls.section}.routes.{g}", tokens, None, N_("must be a list of recipients"))
                for g, tokens in routes.items() if not _is_route(tokens)]


def _is_route(tokens: Any) -> bool:
    return isinstance(tokens, list) and all(isinstance(t, str) for t in tokens)


#: Every default, as stored (a new copy: callers may not change the model's defaults).
DEFAULTS: dict[str, Any] = IncidentSettings.defaults()


def conf(school: School | None) -> dict[str, Any]:
    """The school's incident settings as a dict (bad values fall back to their defaults)."""
    return IncidentSettings.of(school).model_dump()

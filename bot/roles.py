"""Roles from REQUIREMENTS.md, their Vietnamese titles, and forgiving parsing of what people type."""

from __future__ import annotations

import re
from enum import StrEnum

from bot.i18n import N_
from bot.text import fold


class Role(StrEnum):
    PRINCIPAL = "principal"
    VICE_PRINCIPAL = "vice_principal"
    BOARD_HEAD = "board_head"
    BOARD_MEMBER = "board_member"
    SECRETARY = "secretary"
    DEPT_HEAD = "dept_head"
    TEACHER = "teacher"
    GUARD = "guard"
    GUARD_LEAD = "guard_lead"
    IT = "it"
    EQUIPMENT = "equipment"
    ACCOUNTANT = "accountant"
    CLERK = "clerk"
    NURSE = "nurse"
    STAFF = "staff"


#: Board of directors (Ban giám hiệu).
BGH: frozenset[Role] = frozenset({Role.PRINCIPAL, Role.VICE_PRINCIPAL})

#: Display titles; looked up in the catalogue at display time.
ROLE_TITLES: dict[Role, str] = {
    Role.PRINCIPAL: N_("Principal"),
    Role.VICE_PRINCIPAL: N_("Vice principal"),
    Role.BOARD_HEAD: N_("Head of the editorial board"),
    Role.BOARD_MEMBER: N_("Editorial board member"),
    Role.SECRETARY: N_("Editorial board secretary"),
    Role.DEPT_HEAD: N_("Head of department"),
    Role.TEACHER: N_("Teacher"),
    Role.GUARD: N_("Guard"),
    Role.GUARD_LEAD: N_("Head of security"),
    Role.IT: N_("IT staff"),
    Role.EQUIPMENT: N_("Equipment officer"),
    Role.ACCOUNTANT: N_("Accountant"),
    Role.CLERK: N_("Clerk"),
    Role.NURSE: N_("School nurse"),
    Role.STAFF: N_("Staff"),
}

# Vietnamese (and common short) titles, folded (no diacritics, lower case).
_ALIASES: dict[str, Role] = {
    "hieu truong": Role.PRINCIPAL, "ht": Role.PRINCIPAL,
    "pho hieu truong": Role.VICE_PRINCIPAL, "pht": Role.VICE_PRINCIPAL, "pho ht": Role.VICE_PRINCIPAL,
    "truong ban bien tap": Role.BOARD_HEAD, "truong ban quan tri": Role.BOARD_HEAD,
    "truong ban": Role.BOARD_HEAD,
    "uy vien": Role.BOARD_MEMBER, "uy vien ban quan tri": Role.BOARD_MEMBER,
    "uy vien ban bien tap": Role.BOARD_MEMBER, "thanh vien ban bien tap": Role.BOARD_MEMBER,
    "thu ky": Role.SECRETARY, "thu ky ban bien tap": Role.SECRETARY,
    "to truong": Role.DEPT_HEAD, "to truong chuyen mon": Role.DEPT_HEAD,
    "giao vien": Role.TEACHER, "gv": Role.TEACHER,
    "giao vien chu nhiem": Role.TEACHER, "gvcn": Role.TEACHER, "giao vien bo mon": Role.TEACHER,
    "hieu pho": Role.VICE_PRINCIPAL,
    "bao ve": Role.GUARD, "nhan vien bao ve": Role.GUARD,
    "truong phong bao ve": Role.GUARD_LEAD, "truong bao ve": Role.GUARD_LEAD,
    "to truong bao ve": Role.GUARD_LEAD, "doi truong bao ve": Role.GUARD_LEAD,
    "nhan vien cntt": Role.IT, "cntt": Role.IT, "to cntt": Role.IT, "cong nghe thong tin": Role.IT,
    "nhan vien cong nghe thong tin": Role.IT,
    "nhan vien thiet bi": Role.EQUIPMENT, "thiet bi": Role.EQUIPMENT,
    "ke toan": Role.ACCOUNTANT,
    "van thu": Role.CLERK,
    "y te": Role.NURSE, "nhan vien y te": Role.NURSE,
    "nhan vien": Role.STAFF,
}


def parse_role(raw: str) -> Role | None:
    """A role key (``vice_principal``) or a Vietnamese title (``Phó Hiệu trưởng``) → Role."""
    key = fold(raw).replace("-", " ").strip()
    if not key:
        return None
    underscored = key.replace(" ", "_")
    for role in Role:
        if underscored == role.value:
            return role
    return _ALIASES.get(key)


def parse_roles(raw: str) -> tuple[list[Role], list[str]]:
    """Split on ``;``, ``,``, ``/`` or line breaks (Alt+Enter in an Excel cell); return (roles, unknown parts)."""
    roles: list[Role] = []
    unknown: list[str] = []
    for part in re.split(r"[;,/\r\n]", raw):
        if not part.strip():
            continue
        role = parse_role(part)
        if role is None:
            unknown.append(part.strip())
        elif role not in roles:
            roles.append(role)
    return roles, unknown

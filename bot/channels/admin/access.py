"""Who may open the web console, and which areas of it (the server checks this on every page)."""

from __future__ import annotations

from bot.roles import Role
from storage.models import Person

#: every area of the console ("school": administer the whole school)
SCHOOL = "school"
ARTICLES = "articles"
SECURITY = "security"
EQUIPMENT = "equipment"
DEPARTMENT = "department"

#: role → the areas of the console it sees
AREAS: dict[str, frozenset[str]] = {
    Role.PRINCIPAL: frozenset({SCHOOL}),
    Role.VICE_PRINCIPAL: frozenset({SCHOOL}),
    Role.IT: frozenset({SCHOOL}),
    Role.DEPT_HEAD: frozenset({DEPARTMENT}),
    Role.SECRETARY: frozenset({ARTICLES}),
    Role.GUARD_LEAD: frozenset({SECURITY}),
    Role.EQUIPMENT: frozenset({EQUIPMENT}),
}

#: the roles that may log in (and see the console button in the menu)
CONSOLE_ROLES: frozenset[str] = frozenset(AREAS)


def areas_of(person: Person) -> frozenset[str]:
    """The console areas this person sees (none when inactive)."""
    if not person.is_active:
        return frozenset()
    out: set[str] = set()
    for role in person.roles:
        out |= AREAS.get(role, frozenset())
    return frozenset(out)


def may_log_in(person: Person) -> bool:
    return bool(areas_of(person))


def sees(person: Person, area: str) -> bool:
    """Whether this person sees ``area`` (administrators of the school see every area)."""
    areas = areas_of(person)
    return SCHOOL in areas or area in areas

"""Official e-mail names (seed 001 Điều 5).

Điều 5.1: ``<tên><họ và tên lót viết tắt>`` — the given name in full followed by the initials of the
family and middle names, lower case, no spaces, no diacritics (đ → d), then the school's suffix:
Nguyễn Thị Vân → ``vannt``, Trần Văn Đức → ``ductv``, Nguyễn Thị Thanh Vân → ``vanntt``.

Điều 5.2: when several people of the school share the same name, the one holding a leadership
position keeps the plain name and the others get 1, 2, 3 … after the initials (``vannt1``,
``vannt2``), in a stable order: leadership rank (principal, vice principals, then heads of
department / security / the editorial board, then everyone else), then the order in which people
were recorded (person id). Addresses that already exist are never changed; a proposal never takes
one of them.

``python main.py email-names [--school NAME] [--suffix @truong.edu.vn] [--apply]`` proposes (and
with ``--apply`` saves) an address for every person in service without one; the staff import gives
newcomers theirs the same way (:func:`assign_for_newcomers`)."""

from __future__ import annotations

import html
import re
import unicodedata
from collections.abc import Hashable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from sqlmodel import Session, col, select

from bot.flows.accounts.service import find_school
from bot.roles import Role
from bot.text import fold, normalize_email
from storage import audit
from storage.models import Person, PersonStatus, School, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from bot.i18n import Translator
    from storage.db import Database

#: Leadership rank for Điều 5.2 (lower keeps the plain name).
LEADERSHIP_RANK: dict[str, int] = {
    Role.PRINCIPAL: 0,
    Role.VICE_PRINCIPAL: 1,
    Role.BOARD_HEAD: 2,
    Role.DEPT_HEAD: 2,
    Role.GUARD_LEAD: 2,
}
OTHERS_RANK = 9
MAX_NUMBER = 999
_NOT_LETTER = re.compile(r"[^a-z]+")


def leadership_rank(roles: Iterable[str]) -> int:
    return min((LEADERSHIP_RANK.get(r, OTHERS_RANK) for r in roles), default=OTHERS_RANK)


def local_part(full_name: str) -> str | None:
    """``Nguyễn Thị Vân`` → ``vannt``; a one-word name is used whole; None when no letter is left.

    Extra spaces, NFD input, upper case and stray punctuation are forgiven (``fold`` removes the
    diacritics and maps đ → d)."""
    words = [_NOT_LETTER.sub("", w) for w in fold(unicodedata.normalize("NFC", full_name or "")).split()]
    words = [w for w in words if w]
    if not words:
        return None
    return words[-1] + "".join(w[0] for w in words[:-1])


def normalize_suffix(raw: str | None) -> str:
    """``@truong.edu.vn``, ``truong.edu.vn`` or ``.thtt@gmail.com`` → the text appended to names
    (``@`` added when it has none); empty when nothing usable is given."""
    s = (raw or "").strip().lower()
    if not s:
        return ""
    if "@" not in s:
        s = "@" + s.lstrip(".")
    return s


@dataclass(frozen=True, slots=True)
class NameEntry:
    """Someone who needs an address. ``key`` identifies them (a person id in the database)."""

    key: Hashable
    full_name: str
    rank: int = OTHERS_RANK


def assign(entries: Sequence[NameEntry], *, suffix: str, taken: Iterable[str] = ()) -> dict[Hashable, str]:
    """Addresses for ``entries`` (in the given order for equal ranks), never one of ``taken``.

    Within each group sharing a name, the best-ranked (then earliest) entry gets the plain name and
    the others 1, 2, 3 … in order; a number already taken is skipped."""
    suffix = normalize_suffix(suffix)
    used = {t.strip().lower() for t in taken if t}
    groups: dict[str, list[tuple[int, int, NameEntry]]] = {}
    for i, e in enumerate(entries):
        base = local_part(e.full_name)
        if base is not None:
            groups.setdefault(base, []).append((e.rank, i, e))
    out: dict[Hashable, str] = {}
    for base, members in groups.items():
        members.sort(key=lambda m: (m[0], m[1]))
        for n, (_rank, _i, entry) in enumerate(members):
            candidates = ([base] if n == 0 else []) + [f"{base}{k}" for k in range(1, MAX_NUMBER + 1)]
            for local in candidates:
                address = local + suffix
                if address not in used:
                    used.add(address)
                    out[entry.key] = address
                    break
    return out


# -- the database ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class Proposal:
    person_id: int
    full_name: str
    unit: str
    address: str


def proposals(session: Session, *, school: School, suffix: str | None = None) -> list[Proposal]:
    """An address for every person in service at ``school`` without one (none without a suffix;
    ``suffix`` overrides the school's)."""
    suffix = normalize_suffix(school.email_suffix if suffix is None else suffix)
    if not suffix:
        return []
    people = list(session.exec(select(Person).where(Person.school_id == school.id).order_by(col(Person.id))))
    taken = [p.email for p in people if p.email]
    wanting = [p for p in people if not p.email and p.status == PersonStatus.ACTIVE]
    got = assign([NameEntry(p.id, p.full_name, leadership_rank(p.roles)) for p in wanting], suffix=suffix,
                 taken=taken)
    out = []
    for p in wanting:
        address = got.get(p.id)
        if address and normalize_email(address) == address and p.id is not None:
            out.append(Proposal(p.id, p.full_name, p.unit, address))
    return out


def apply(session: Session, *, school: School, chosen: Sequence[Proposal], source: str,
          now: datetime | None = None) -> int:
    """Save the addresses (only for people still without one) and record one audit event."""
    now = now or utcnow()
    saved: list[Proposal] = []
    for prop in chosen:
        person = session.get(Person, prop.person_id)
        if person is None or person.school_id != school.id or person.email:
            continue
        person.email, person.updated_at = prop.address, now
        session.add(person)
        saved.append(prop)
    if saved:
        session.flush()
        audit.record(session, action="email.names_assigned", school_id=school.id, channel=source,
                     subject=f"school:{school.id}", at=now,
                     details={"count": len(saved), "people": {str(p.person_id): p.address for p in saved}})
    return len(saved)


def assign_for_newcomers(session: Session, *, school: School, people: Sequence[Person],
                         now: datetime | None = None) -> int:
    """Give people just added by the staff import their official address (when the school has a
    suffix). Proposals are computed for everyone in service without one, so a newcomer never takes
    the plain name a leader of the same name is due."""
    ids = {p.id for p in people if p.id is not None and not p.email}
    if not ids:
        return 0
    chosen = [prop for prop in proposals(session, school=school) if prop.person_id in ids]
    return apply(session, school=school, chosen=chosen, source="import", now=now)


def run_cli(db: Database, *, school_name: str | None, suffix: str | None, do_apply: bool, tr: Translator) -> int:
    """``python main.py email-names``: print the proposals; save them with ``--apply``."""
    def unit_of_work(s: Session) -> tuple[int, list[str]]:
        school, problem = find_school(s, school_name, tr=tr)
        if school is None:
            return 1, [problem]
        lines: list[str] = []
        use_suffix = normalize_suffix(school.email_suffix)
        if suffix is not None:
            new_suffix = normalize_suffix(suffix)
            if not new_suffix or normalize_email("a" + new_suffix) is None:
                return 1, [tr.t("“{suffix}” is not a usable e-mail suffix (for example @truong.edu.vn).",
                                suffix=suffix)]
            if do_apply and new_suffix != school.email_suffix:
                old = school.email_suffix
                school.email_suffix = new_suffix
                s.add(school)
                s.flush()
                audit.record(s, action="email.suffix_changed", school_id=school.id, channel="cli",
                             subject=f"school:{school.id}", details={"old": old, "new": new_suffix})
            use_suffix = new_suffix
        if not use_suffix:
            return 1, [tr.t("The school “{school}” has no e-mail suffix yet. Give it once with "
                            "--suffix @truong.edu.vn --apply.", school=school.name)]
        found = proposals(s, school=school, suffix=use_suffix)
        lines.append(tr.t("Official e-mail names for {school} (suffix {suffix}):", school=school.name,
                          suffix=use_suffix))
        if not found:
            lines.append(tr.t("Everyone in service already has an e-mail address."))
            return 0, lines
        for prop in found:
            lines.append("  • " + tr.t("{name} ({unit}): {address}", name=prop.full_name, unit=prop.unit or "-",
                                       address=prop.address))
        if do_apply:
            n = apply(s, school=school, chosen=found, source="cli")
            lines.append(tr.t("{n} addresses saved.", n=tr.number(n)))
        else:
            lines.append(tr.t("Nothing was saved. Run again with --apply to save these addresses."))
        return 0, lines

    code, lines = db.run_sync(unit_of_work)
    print(html.unescape("\n".join(lines)), flush=True)
    return code


__all__ = ["LEADERSHIP_RANK", "NameEntry", "Proposal", "apply", "assign", "assign_for_newcomers", "leadership_rank",
           "local_part", "normalize_suffix", "proposals", "run_cli"]

"""Systems, accounts, password resets and revocation checklists: keyword-only storage functions.

A school's systems are configured in ``School.settings["accounts"]["systems"]`` (declared with the
other account settings in :class:`bot.flows.accounts.settings.AccountSettings`; defaults below:
official e-mail, school-management software, the sector database, the equipment system, the
portal), each marked sensitive or not; a reset of a sensitive system's password needs BGH
approval first. Which person has which account is the ``account`` table — user names only.

Revocation (002 Điều 10.1.c): :func:`open_revocation` is called when a person's status changes
from in service to transferred / retired / left (``/nhansu`` or the staff import). It stops the
person's channel identities at once, closes their open conversations, and opens a checklist with
one item per account; IT ticks each item (:func:`tick_item`, a conditional update)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import func, update
from sqlmodel import Session, col, select

from bot.flows.accounts.models import (
    Account,
    AccountReset,
    AccountStatus,
    ResetStatus,
    Revocation,
    RevocationItem,
)
from bot.flows.accounts.settings import DEFAULT_DELETE_MINUTES, MAX_DELETE_MINUTES, AccountSettings
from bot.i18n import N_
from bot.settings import save
from bot.text import clean, fold
from storage import audit
from storage.models import ChannelIdentity, Conversation, Person, PersonStatus, School, utcnow

if TYPE_CHECKING:  # pragma: no cover
    from bot.i18n import Translator

SETTINGS_KEY = AccountSettings.section
DEPARTED = (PersonStatus.TRANSFERRED, PersonStatus.RETIRED, PersonStatus.LEFT)


# -- systems --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class System:
    """One system of the school. ``name`` is a catalogue msgid for the built-in ones."""

    key: str
    name: str
    sensitive: bool = False
    builtin: bool = False

    def title(self, tr: Translator) -> str:
        return tr.t(self.name) if self.builtin else self.name

    def as_setting(self) -> dict[str, Any]:
        return {"key": self.key, "name": "" if self.builtin else self.name, "sensitive": self.sensitive}


DEFAULT_SYSTEMS: tuple[System, ...] = (
    System("email", N_("Official e-mail"), False, True),
    System("school_mgmt", N_("School management software"), True, True),
    System("sector_db", N_("Sector database"), True, True),
    System("equipment", N_("Teaching-equipment system"), False, True),
    System("portal", N_("School web portal"), False, True),
)
_BUILTIN = {s.key: s for s in DEFAULT_SYSTEMS}

#: What people call the built-in systems (folded), for imports and typed answers.
SYSTEM_ALIASES: dict[str, str] = {}
for _key, _names in {
    "email": ("email", "e mail", "mail", "thu dien tu", "thu dien tu cong vu", "hop thu", "email cong vu",
              "official e mail"),
    "school_mgmt": ("phan mem quan ly nha truong", "quan ly nha truong", "qlnt", "smas", "vnedu",
                    "phan mem quan ly", "quan tri nha truong", "school management software"),
    "sector_db": ("csdl", "csdl nganh", "co so du lieu", "co so du lieu nganh", "csdl nganh giao duc",
                  "co so du lieu nganh giao duc", "sector database"),
    "equipment": ("thiet bi", "he thong thiet bi", "quan ly thiet bi", "thiet bi day hoc",
                  "he thong quan ly thiet bi", "teaching equipment system"),
    "portal": ("cong thong tin", "cong thong tin dien tu", "website", "web", "portal", "trang web",
               "school web portal"),
}.items():
    for _name in _names:
        SYSTEM_ALIASES[_name] = _key


def account_settings(school: School | None) -> dict[str, Any]:
    """The school's account settings as a dict (defaults where nothing usable is stored)."""
    return AccountSettings.of(school).model_dump()


def systems(school: School) -> list[System]:
    """The school's systems (its own list when set, else the defaults)."""
    conf = AccountSettings.of(school)
    if "systems" not in conf.model_fields_set or not conf.systems:
        return list(DEFAULT_SYSTEMS)
    out: list[System] = []
    for item in conf.systems:
        key = str(item["key"]).strip()[:40]
        name = clean(str(item.get("name") or ""))
        sensitive = bool(item.get("sensitive", False))
        if not name and key in _BUILTIN:
            out.append(System(key, _BUILTIN[key].name, sensitive, True))
        else:
            out.append(System(key, name or key, sensitive, False))
    return out or list(DEFAULT_SYSTEMS)


def system_for(school: School, key: str) -> System:
    """The configured system ``key``; one no longer configured is shown by its key and treated as
    sensitive (the safe side)."""
    for s in systems(school):
        if s.key == key:
            return s
    if key in _BUILTIN:
        return System(key, _BUILTIN[key].name, True, True)
    return System(key, key, True, False)


def find_system(school: School, text: str) -> System | None:
    """A system by its key, its name (diacritics forgiven) or a common name (``CSDL``, ``SMAS``)."""
    q = fold(text).replace("-", " ").replace("_", " ").strip()
    if not q:
        return None
    for s in systems(school):
        if q in (fold(s.key).replace("_", " "), fold(s.name)):
            return s
    alias = SYSTEM_ALIASES.get(q)
    if alias is not None:
        for s in systems(school):
            if s.key == alias:
                return s
    return None


def save_systems(school: School, items: Sequence[System]) -> None:
    conf = AccountSettings.of(school)
    save(school, conf.updated(systems=[s.as_setting() for s in items]))


def delete_after_seconds(school: School | None) -> int:
    """How long a temporary password stays in the chats (``password_delete_minutes``, default 10)."""
    return AccountSettings.of(school).password_delete_minutes * 60


# -- schools --------------------------------------------------------------------------------------
def find_school(session: Session, name: str | None, *, tr: Translator) -> tuple[School | None, str]:
    """``--school NAME`` (name or short name, diacritics forgiven), else the only school.
    Returns (school, "") or (None, the problem to print)."""
    schools = list(session.exec(select(School).order_by(col(School.id))))
    if not schools:
        return None, tr.t("No school in the database yet: import the staff list first "
                          "(python main.py import-staff FILE).")
    if name:
        key = fold(name)
        for school in schools:
            if fold(school.name) == key or (school.short_name and fold(school.short_name) == key):
                return school, ""
        return None, tr.t("School “{school}” not found. Schools: {names}.", school=name,
                          names=", ".join(x.name for x in schools))
    if len(schools) > 1:
        return None, tr.t("There are several schools in the database ({names}); choose one with --school.",
                          names=", ".join(x.name for x in schools))
    return schools[0], ""


# -- accounts -------------------------------------------------------------------------------------
def accounts_of(session: Session, *, person_id: int, statuses: Sequence[str] | None = None) -> list[Account]:
    q = select(Account).where(Account.person_id == person_id)
    if statuses:
        q = q.where(col(Account.status).in_(list(statuses)))
    return list(session.exec(q.order_by(col(Account.system), col(Account.id))))


def add_account(session: Session, *, school_id: int, person_id: int, system: str, username: str,
                now: datetime | None = None) -> tuple[Account | None, str]:
    """Record an account. Returns (account, "") or (None, reason) with reason ``taken`` (the user name
    belongs to someone else: accounts are never shared, 002 Điều 10.1.a) or ``exists``."""
    now = now or utcnow()
    existing = session.exec(select(Account).where(Account.school_id == school_id, Account.system == system,
                                                  func.lower(Account.username) == username.lower())).first()
    if existing is not None:
        return existing, ("exists" if existing.person_id == person_id else "taken")
    acc = Account(school_id=school_id, person_id=person_id, system=system, username=username,
                  created_at=now, updated_at=now)
    session.add(acc)
    session.flush()
    return acc, ""


def open_reset(session: Session, *, account_id: int) -> AccountReset | None:
    """The reset of this account still waiting for approval or IT, if any."""
    return session.exec(select(AccountReset).where(
        AccountReset.account_id == account_id,
        col(AccountReset.status).in_([ResetStatus.APPROVAL, ResetStatus.WAITING]))).first()


def claim_reset(session: Session, *, reset_id: int, by: int, method: str, now: datetime) -> bool:
    """Mark a waiting reset done by ``by``; False when someone else handled it first."""
    res = session.execute(update(AccountReset)
                          .where(col(AccountReset.id) == reset_id, col(AccountReset.status) == ResetStatus.WAITING)
                          .values(status=ResetStatus.DONE, method=method, handled_by=by, handled_at=now)
                          .execution_options(synchronize_session=False))
    return bool(res.rowcount == 1)  # type: ignore[attr-defined]


def set_lock(session: Session, *, account: Account, locked: bool, by: int | None, reason: str,
             now: datetime) -> bool:
    """Lock (with a reason) or unlock; a conditional update, False when it already was."""
    want_from = AccountStatus.ACTIVE if locked else AccountStatus.LOCKED
    values: dict[str, Any] = {"status": AccountStatus.LOCKED if locked else AccountStatus.ACTIVE,
                              "updated_at": now}
    if locked:
        values.update(locked_reason=reason[:300], locked_at=now, locked_by=by)
    res = session.execute(update(Account).where(col(Account.id) == account.id, col(Account.status) == want_from)
                          .values(**values).execution_options(synchronize_session=False))
    session.refresh(account)
    return bool(res.rowcount == 1)  # type: ignore[attr-defined]


# -- revocation -----------------------------------------------------------------------------------
def stop_identities(session: Session, *, person: Person) -> int:
    """Deactivate every channel identity of the person and clear their open conversations."""
    n = 0
    for ident in session.exec(select(ChannelIdentity).where(ChannelIdentity.person_id == person.id,
                                                            col(ChannelIdentity.active).is_(True))).all():
        ident.active = False
        session.add(ident)
        n += 1
    for conv in session.exec(select(Conversation).where(Conversation.person_id == person.id)).all():
        conv.flow, conv.state, conv.data, conv.expires_at = None, None, {}, None
        session.add(conv)
    return n


def open_revocation(session: Session, *, person: Person, source: str, opened_by: int | None = None,
                    channel: str = "", now: datetime | None = None) -> Revocation:
    """Open the revocation checklist of a person who is no longer in service (their status is set by
    the caller). An open checklist of the same person is returned as is."""
    now = now or utcnow()
    assert person.id is not None
    current = session.exec(select(Revocation).where(Revocation.person_id == person.id,
                                                    col(Revocation.closed_at).is_(None))).first()
    if current is not None:
        return current
    stopped = stop_identities(session, person=person)
    session.execute(update(AccountReset).where(col(AccountReset.person_id) == person.id,
                                               col(AccountReset.status).in_([ResetStatus.APPROVAL,
                                                                             ResetStatus.WAITING]))
                    .values(status=ResetStatus.CANCELLED).execution_options(synchronize_session=False))
    rev = Revocation(school_id=person.school_id, person_id=person.id, new_status=person.status, source=source,
                     opened_by=opened_by, opened_at=now)
    session.add(rev)
    session.flush()
    assert rev.id is not None
    items = [a for a in accounts_of(session, person_id=person.id) if a.status != AccountStatus.REVOKED]
    for acc in items:
        session.add(RevocationItem(school_id=person.school_id, revocation_id=rev.id, account_id=acc.id or 0))
    if not items:
        rev.closed_at = now
        session.add(rev)
    session.flush()
    audit.record(session, action="account.revocation_opened", school_id=person.school_id, actor_id=opened_by,
                 channel=channel or source, subject=f"person:{person.id}", at=now,
                 details={"revocation": rev.id, "status": person.status, "source": source,
                          "accounts": [a.id for a in items], "identities_stopped": stopped})
    return rev


def revocation_items(session: Session, *, revocation_id: int) -> list[tuple[RevocationItem, Account]]:
    rows = session.exec(select(RevocationItem, Account).where(col(RevocationItem.account_id) == col(Account.id),
                                                              RevocationItem.revocation_id == revocation_id)
                        .order_by(col(Account.system), col(RevocationItem.id))).all()
    return [(item, acc) for item, acc in rows]


def tick_item(session: Session, *, item: RevocationItem, by: int, now: datetime) -> bool:
    """Mark one account revoked (a conditional update: one tick wins); closes the checklist when it
    was the last. False when it was already ticked."""
    res = session.execute(update(RevocationItem)
                          .where(col(RevocationItem.id) == item.id, col(RevocationItem.done_at).is_(None))
                          .values(done_at=now, done_by=by).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        session.expire_all()
        return False
    session.execute(update(Account).where(col(Account.id) == item.account_id)
                    .values(status=AccountStatus.REVOKED, revoked_at=now, revoked_by=by, updated_at=now)
                    .execution_options(synchronize_session=False))
    left = session.exec(select(RevocationItem.id).where(RevocationItem.revocation_id == item.revocation_id,
                                                        col(RevocationItem.done_at).is_(None))).first()
    if left is None:
        session.execute(update(Revocation).where(col(Revocation.id) == item.revocation_id,
                                                  col(Revocation.closed_at).is_(None))
                        .values(closed_at=now).execution_options(synchronize_session=False))
    session.expire_all()
    return True


def open_revocations(session: Session, *, school_id: int) -> list[Revocation]:
    return list(session.exec(select(Revocation).where(Revocation.school_id == school_id,
                                                      col(Revocation.closed_at).is_(None))
                             .order_by(col(Revocation.opened_at), col(Revocation.id))))


__all__ = ["DEFAULT_DELETE_MINUTES", "DEFAULT_SYSTEMS", "DEPARTED", "MAX_DELETE_MINUTES", "SETTINGS_KEY", "System", "account_settings", "accounts_of", "add_account",
           "claim_reset", "delete_after_seconds", "find_school", "find_system", "open_reset",
           "open_revocation", "open_revocations", "revocation_items", "save_systems", "set_lock", "stop_identities",
           "system_for", "systems", "tick_item"]

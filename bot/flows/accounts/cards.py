"""Shared pieces of the accounts workflows (``bot/flows/accounts*.py``): temporary passwords, who
acts for the IT team, the cards IT and the principal see (and their later edits), and the demo data.

Passwords (003 Điều 5.2, 002 Điều 10.1.a): a temporary password is made with :mod:`secrets` when
IT taps ``Tạo mật khẩu tạm``, put into two replies (to IT and, privately, to the owner) with
``protect`` and ``delete_after``, and then forgotten. It is never written to the database (the core
stores no reply text; :class:`storage.models.SentMessage` holds only where a message went, so the
scheduler can delete it), never put in conversation data, an audit event or a notice, and never
logged: python-telegram-bot logs every request's parameters at DEBUG, so the Telegram channel keeps
its Bot API loggers at INFO (``bot/channels/telegram.py``)."""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Iterable

from sqlmodel import Session, col, select

from bot.core import Button, Ctx, MessageRef, Outbound, Reply, destinations, keyboard
from bot.flows.accounts.models import Account, AccountReset, ResetStatus, Revocation
from bot.flows.accounts.service import (
    accounts_of,
    add_account,
    revocation_items,
    system_for,
)
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.steps import match_people
from storage.models import Person, PersonStatus, School, SentMessage
from storage.people import people_with_role

log = logging.getLogger(__name__)

PREFIX = "acc"
RESET_CARD = "acct_reset"
REVOKE_CARD = "acct_revoke"
#: Channels whose messages the assistant can delete later; a temporary password goes nowhere else.
DELETABLE_CHANNELS = frozenset({"telegram", "web"})

STATUS_LABELS: dict[str, str] = {
    PersonStatus.TRANSFERRED: N_("Transferred to another school"),
    PersonStatus.RETIRED: N_("Retired"),
    PersonStatus.LEFT: N_("Left the school"),
}

# -- temporary passwords --------------------------------------------------------------------------
UPPER = "ABCDEFGHJKLMNPQRSTUVWXYZ"
LOWER = "abcdefghijkmnopqrstuvwxyz"
DIGITS = "23456789"
SYMBOLS = "@#$%!?*"
PASSWORD_LENGTH = 12


def temporary_password(length: int = PASSWORD_LENGTH) -> str:
    """A strong temporary password from :mod:`secrets`: upper and lower case letters, digits and a
    symbol (what the sector's systems require), without look-alikes (0/O, 1/l/I)."""
    if length < 8:
        raise ValueError("a temporary password has at least 8 characters")
    pool = UPPER + LOWER + DIGITS + SYMBOLS
    chars = [secrets.choice(UPPER), secrets.choice(LOWER), secrets.choice(DIGITS), secrets.choice(SYMBOLS)]
    chars += [secrets.choice(pool) for _ in range(length - len(chars))]
    secrets.SystemRandom().shuffle(chars)
    return "".join(chars)


# -- the IT team ----------------------------------------------------------------------------------
def it_team(session: Session, school_id: int) -> list[Person]:
    """Active IT staff of the school; when there are none, the principal acts for them."""
    team = people_with_role(session, school_id=school_id, role=Role.IT)
    return team or people_with_role(session, school_id=school_id, role=Role.PRINCIPAL)


def may_act_for_it(session: Session, person: Person, school_id: int) -> bool:
    if not person.is_active or person.school_id != school_id:
        return False
    if person.has_role(Role.IT):
        return True
    return person.has_role(Role.PRINCIPAL) and not people_with_role(session, school_id=school_id, role=Role.IT)


def principals(session: Session, school_id: int) -> list[Person]:
    return people_with_role(session, school_id=school_id, role=Role.PRINCIPAL)


def deletable_destination(session: Session, person: Person) -> tuple[str, str] | None:
    """The person's first linked chat whose messages can be deleted later (Telegram, web chat)."""
    for channel, chat in destinations(session, person):
        if channel in DELETABLE_CHANNELS:
            return channel, chat
    return None


def _name(session: Session, person_id: int | None) -> str:
    p = session.get(Person, person_id) if person_id else None
    return p.full_name if p else "?"


def _owner_line(tr: Translator, person: Person | None) -> str:
    if person is None:
        return "?"
    return person.full_name + (f" ({person.unit})" if person.unit else "")


def account_label(tr: Translator, school: School, acc: Account) -> str:
    """``Thư điện tử công vụ · vannt@…`` (plain text, for buttons)."""
    username = acc.username if len(acc.username) <= 40 else acc.username[:39] + "…"
    return f"{system_for(school, acc.system).title(tr)} · {username}"


# -- reset cards ----------------------------------------------------------------------------------
def reset_card(session: Session, tr: Translator, reset: AccountReset, *, buttons: bool) -> Reply:
    """What IT sees of a reset request; buttons only while it waits for them."""
    acc = session.get(Account, reset.account_id)
    school = session.get(School, reset.school_id)
    owner = session.get(Person, reset.person_id)
    assert acc is not None and school is not None
    system = system_for(school, acc.system)
    lines = [tr.t("🔑 <b>Password reset</b> · request #{id}", id=reset.id),
             tr.t("Owner: {name}", name=_owner_line(tr, owner)),
             tr.t("System: {system}", system=system.title(tr)),
             tr.t("User name: <code>{username}</code>", username=acc.username),
             tr.t("Asked: {time}", time=tr.datetime(reset.created_at))]
    if reset.approval_id is not None:
        from storage.models import Approval

        ap = session.get(Approval, reset.approval_id)
        if ap is not None and ap.decided_by is not None and ap.status == "approved":
            lines.append(tr.t("✅ Approved by {name} (sensitive system)", name=_name(session, ap.decided_by)))
    when = tr.datetime(reset.handled_at) if reset.handled_at else ""
    if reset.status == ResetStatus.DONE and reset.method == "temporary":
        lines.append(tr.t("✅ Temporary password made by {name} at {time}", name=_name(session, reset.handled_by),
                          time=when))
    elif reset.status == ResetStatus.DONE:
        lines.append(tr.t("✅ Reset by other means by {name} at {time}", name=_name(session, reset.handled_by),
                          time=when))
    elif reset.status == ResetStatus.CANCELLED:
        lines.append(tr.t("🚫 Cancelled: the owner is no longer in service."))
    elif reset.status == ResetStatus.WAITING:
        lines.append(tr.t("Tap “Create a temporary password” to get one to set in the system (it is also "
                          "sent privately to the owner), or reset it another way and tap “Reset done”."))
    kb: tuple[tuple[Button, ...], ...] = ()
    if buttons and reset.status == ResetStatus.WAITING:
        kb = keyboard(Button(tr.t("🔐 Create a temporary password"), f"{PREFIX}:g:{reset.id}"),
                      Button(tr.t("✅ Reset done"), f"{PREFIX}:m:{reset.id}"), per_row=1)
    return Reply("\n".join(lines), buttons=kb, track=(RESET_CARD, str(reset.id)))


def send_reset_cards(ctx: Ctx, reset: AccountReset) -> int:
    n = 0
    for p in it_team(ctx.session, reset.school_id):
        if ctx.send_to(p, lambda tr: reset_card(ctx.session, tr, reset, buttons=True)):
            n += 1
    if n == 0:
        log.warning("reset %s: nobody of the IT team can be reached", reset.id)
    return n


def refresh(ctx: Ctx, kind: str, ref_id: int, make: Callable[[Translator, Person | None], Reply]) -> None:
    """Edit every tracked message of ``(kind, ref_id)`` to its current state."""
    rows = ctx.session.exec(select(SentMessage).where(SentMessage.ref_kind == kind,
                                                      SentMessage.ref_id == str(ref_id))
                            .order_by(col(SentMessage.id))).all()
    for row in rows:
        if row.deleted_at is not None:
            continue
        person = ctx.session.get(Person, row.person_id) if row.person_id else None
        tr = ctx.translator_for(person) if person else ctx.tr
        r = make(tr, person)
        ctx.outbox.append(Outbound(row.channel, row.chat_id,
                                   Reply(r.text, buttons=r.buttons,
                                         edit=MessageRef(row.channel, row.chat_id, row.message_id)),
                                   row.person_id))


def refresh_reset_cards(ctx: Ctx, reset: AccountReset) -> None:
    ctx.session.refresh(reset)
    refresh(ctx, RESET_CARD, reset.id or 0, lambda tr, p: reset_card(ctx.session, tr, reset, buttons=True))


# -- revocation cards -----------------------------------------------------------------------------
def revocation_card(session: Session, tr: Translator, rev: Revocation, *, buttons: bool,
                    prefix: str | None = None) -> Reply:
    """The checklist: one line per account, one ``Đã thu hồi`` button per account still open."""
    person = session.get(Person, rev.person_id)
    school = session.get(School, rev.school_id)
    assert school is not None
    items = revocation_items(session, revocation_id=rev.id or 0)
    done = sum(1 for item, _ in items if item.done_at is not None)
    lines = []
    if prefix:
        lines += [tr.t(prefix), ""]
    lines += [tr.t("🚫 <b>Revoke the accounts of {name}</b> · checklist #{id}", name=_owner_line(tr, person),
                   id=rev.id),
              tr.t("New status: {status}, since {date} (002 Điều 10.1.c).",
                   status=tr.t(STATUS_LABELS.get(rev.new_status, rev.new_status)), date=tr.date(rev.opened_at))]
    for item, acc in items:
        system = system_for(school, acc.system).title(tr)
        if item.done_at is not None:
            lines.append(tr.t("✅ {system}: {username} — revoked by {name} at {time}", system=system,
                              username=acc.username, name=_name(session, item.done_by),
                              time=tr.datetime(item.done_at)))
        else:
            lines.append(tr.t("⬜ {system}: {username}", system=system, username=acc.username))
    if not items:
        lines.append(tr.t("No account of this person is recorded. Check the systems for accounts that were "
                          "never recorded."))
    else:
        lines.append(tr.t("Progress: {done}/{total} revoked.", done=done, total=len(items)))
    if rev.closed_at is not None and items:
        lines.append(tr.t("✅ Every account is revoked ({time}).", time=tr.datetime(rev.closed_at)))
    kb: tuple[tuple[Button, ...], ...] = ()
    if buttons and rev.closed_at is None:
        kb = keyboard(*[Button(tr.t("Revoked: {account}", account=account_label(tr, school, acc)),
                               f"{PREFIX}:v:{item.id}")
                        for item, acc in items if item.done_at is None], per_row=1)
    return Reply("\n".join(lines), buttons=kb, track=(REVOKE_CARD, str(rev.id)))


def refresh_revocation_cards(ctx: Ctx, rev: Revocation) -> None:
    ctx.session.refresh(rev)

    def make(tr: Translator, person: Person | None) -> Reply:
        live = person is not None and may_act_for_it(ctx.session, person, rev.school_id)
        return revocation_card(ctx.session, tr, rev, buttons=live)

    refresh(ctx, REVOKE_CARD, rev.id or 0, make)


# -- owners ---------------------------------------------------------------------------------------
def tell(ctx: Ctx, people: Iterable[Person], make: Callable[[Translator], Reply], *,
         skip: Person | None = None) -> None:
    seen: set[int | None] = set()
    for p in people:
        if p.id in seen or (skip is not None and p.id == skip.id):
            continue
        seen.add(p.id)
        ctx.send_to(p, make)


# -- demo -----------------------------------------------------------------------------------------
_DEMO_SYSTEMS_BY_ROLE: dict[str, tuple[str, ...]] = {
    Role.PRINCIPAL: ("email", "school_mgmt", "sector_db", "portal"),
    Role.VICE_PRINCIPAL: ("email", "school_mgmt", "sector_db"),
    Role.TEACHER: ("email", "school_mgmt"),
    Role.DEPT_HEAD: ("email", "school_mgmt"),
    Role.EQUIPMENT: ("email", "equipment"),
    Role.SECRETARY: ("email", "portal"),
    Role.IT: ("email", "portal", "equipment"),
}


def demo_seed(session: Session, school: School) -> None:
    """Official addresses and a few system accounts for the demo people (idempotent)."""
    from bot.flows.accounts import email_names

    email_names.apply(session, school=school, chosen=email_names.proposals(session, school=school), source="demo")
    people = list(session.exec(select(Person).where(Person.school_id == school.id,
                                                    Person.status == PersonStatus.ACTIVE)
                               .order_by(col(Person.id))))
    for p in people:
        assert p.id is not None and school.id is not None
        keys: list[str] = ["email"]
        for role in p.roles:
            keys += [k for k in _DEMO_SYSTEMS_BY_ROLE.get(role, ()) if k not in keys]
        have = {a.system for a in accounts_of(session, person_id=p.id)}
        local = (p.email or "").split("@")[0] or f"user{p.id}"
        for key in keys:
            if key in have:
                continue
            username = p.email if key == "email" and p.email else local
            add_account(session, school_id=school.id, person_id=p.id, system=key, username=username or local)


__all__ = ["DELETABLE_CHANNELS", "PREFIX", "RESET_CARD", "REVOKE_CARD", "STATUS_LABELS", "account_label",
           "deletable_destination", "demo_seed", "it_team", "match_people", "may_act_for_it", "principals",
           "refresh", "refresh_reset_cards", "refresh_revocation_cards", "reset_card", "revocation_card",
           "send_reset_cards", "temporary_password", "tell"]

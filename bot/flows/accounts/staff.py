"""``/nhansu`` — the principal marks a person transferred, retired or left (002 Điều 10.1.c,
003 Điều 6.5). The person's record stays with its new status; their Telegram / Zalo / web chat
identities stop at once (the next message gets only the "not linked" reply); the IT team gets a
checklist card with one ``Đã thu hồi`` button per recorded account and is reminded daily until
every item is done; the principal's copy of the card shows the progress as IT ticks items.

The staff import opens the same checklist when a row changes someone's status to a departed one
(``storage/staff_import.py`` calls :func:`bot.flows.accounts.service.open_revocation`; the cards then go out
at the next scheduler tick, see ``bot/flows/accounts/reset.py``).

```mermaid
stateDiagram-v2
    [*] --> find: /nhansu (open checklists and their progress shown)
    find --> find: several match (buttons)
    find --> status: one person in service
    status --> confirm: transferred / retired / left
    confirm --> [*]: marked; identities stopped; checklist to IT
```
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.core import Ctx, Flow, Inbound, Reply, Step, choice, choice_value, keyboard
from bot.engine.reminders import queue_notice
from bot.flows.accounts import email_names
from bot.flows.accounts.cards import STATUS_LABELS, it_team, principals, revocation_card
from bot.flows.accounts.models import AccountStatus, Revocation
from bot.flows.accounts.reset import RULE_REVOCATIONS, card_key, progress_key
from bot.flows.accounts.service import (
    DEPARTED,
    accounts_of,
    open_revocation,
    open_revocations,
    revocation_items,
)
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.steps import Confirm, PersonPicker, name_and_unit
from storage.models import Person, PersonStatus, School

MAX_MATCHES = 10
PICKER = PersonPicker(none=N_("Nobody in service matches. Type another part of the name, or /huy to stop."),
                      not_listed=N_("That person is not in service at your school."), limit=MAX_MATCHES)
CONFIRM = Confirm(send=N_("✅ Confirm"), send_value="yes", cancel_value="no", cancelled=N_("Nothing was changed."))


def _candidates(ctx: Ctx) -> list[Person]:
    person = ctx.person
    assert person is not None
    return [p for p in ctx.session.exec(select(Person).where(Person.school_id == person.school_id,
                                                            Person.status == PersonStatus.ACTIVE)
                                        .order_by(col(Person.full_name), col(Person.id))).all()
            if p.id != person.id]


_who = name_and_unit


def start(ctx: Ctx) -> Step:
    """Show the open checklists with their progress, then ask whose status changes."""
    assert ctx.person is not None
    lines: list[str] = []
    current = open_revocations(ctx.session, school_id=ctx.person.school_id)
    if current:
        lines.append(ctx.t("<b>Accounts still being revoked</b>"))
        for rev in current:
            items = revocation_items(ctx.session, revocation_id=rev.id or 0)
            done = sum(1 for item, _ in items if item.done_at is not None)
            who = ctx.session.get(Person, rev.person_id)
            lines.append(ctx.t("#{id} {name}: {done}/{total} revoked", id=rev.id, name=who.full_name if who else "?",
                               done=done, total=len(items)))
        lines.append("")
    lines.append(ctx.t("Who is transferring, retiring or leaving? Type part of their name."))
    return Step.goto("find", Reply("\n".join(lines)))


def find(ctx: Ctx, msg: Inbound) -> Step:
    """A person in service (not oneself), by part of the name or from the buttons."""
    target = PICKER.answer(ctx, msg, _candidates(ctx))
    if isinstance(target, Reply):
        return Step.stay(target)
    ctx.data["person_id"] = target.id
    return Step.goto("status", Reply(ctx.t("What happens to {name}?", name=_who(target)), buttons=keyboard(
        *[choice(ctx.t(label), key) for key, label in STATUS_LABELS.items()],
        choice(ctx.t("Cancel"), "cancel"), per_row=1)))


def status(ctx: Ctx, msg: Inbound) -> Step:
    """Transferred, retired or left."""
    value = choice_value(msg) or ""
    if value == "cancel":
        return Step.done(Reply(ctx.t("Nothing was changed.")))
    if value not in STATUS_LABELS:
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    target = ctx.session.get(Person, int(ctx.data.get("person_id") or 0))
    if target is None or target.id is None:
        return Step.done(Reply(ctx.t("That person is not in service at your school.")))
    ctx.data["status"] = value
    n = len(accounts_of(ctx.session, person_id=target.id, statuses=[AccountStatus.ACTIVE, AccountStatus.LOCKED]))
    return CONFIRM.ask(ctx, ctx.t("Mark {name} as “{status}”? Their access to the assistant stops now, and the IT "
                                  "team gets the checklist of their {n} recorded accounts to revoke.",
                                  name=_who(target), status=ctx.t(STATUS_LABELS[value]), n=n))


def _apply(ctx: Ctx) -> Step:
    """Change the status (a conditional update), stop the identities, open the checklist."""
    principal = ctx.person
    assert principal is not None and principal.id is not None
    new_status = str(ctx.data.get("status"))
    target = ctx.session.get(Person, int(ctx.data.get("person_id") or 0))
    if (target is None or target.school_id != principal.school_id or target.id == principal.id
            or new_status not in STATUS_LABELS):
        return Step.done(Reply(ctx.t("That person is not in service at your school.")))
    res = ctx.session.execute(update(Person).where(col(Person.id) == target.id,
                                                   col(Person.status) == PersonStatus.ACTIVE)
                              .values(status=new_status, status_changed_at=ctx.now, updated_at=ctx.now)
                              .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return Step.done(Reply(ctx.t("That person is not in service at your school.")))
    ctx.session.refresh(target)
    ctx.audit("staff.status_changed", f"person:{target.id}", old=PersonStatus.ACTIVE, new=new_status)
    rev = open_revocation(ctx.session, person=target, source="chat", opened_by=principal.id,
                          channel=ctx.inbound.channel, now=ctx.now)
    announce(ctx, rev)
    items = revocation_items(ctx.session, revocation_id=rev.id or 0)
    label = ctx.t(STATUS_LABELS[new_status])
    if not items:
        return Step.done(Reply(ctx.t("{name} is now marked “{status}”; their access to the assistant has stopped. "
                                     "No account of theirs is recorded; the IT team was asked to check the "
                                     "systems.", name=target.full_name, status=label)))
    return Step.done(Reply(ctx.t("{name} is now marked “{status}”; their access to the assistant has stopped. "
                                 "The IT team got the checklist of {n} accounts; your copy shows the progress.",
                                 name=target.full_name, status=label, n=len(items))))


confirm = CONFIRM.step(_apply)


def announce(ctx: Ctx, rev: Revocation) -> None:
    """Send the checklist to the IT team (with buttons) and the principal (progress), recorded under
    the reminder rule's keys so the scheduler never sends them again."""
    school_id = rev.school_id
    team = it_team(ctx.session, school_id)

    def it_card(tr: Translator) -> Reply:
        return revocation_card(ctx.session, tr, rev, buttons=True)

    def progress(tr: Translator) -> Reply:
        return revocation_card(ctx.session, tr, rev, buttons=False)

    for p in team:
        queue_notice(ctx, rule=RULE_REVOCATIONS, person=p, period=card_key(rev.id), make=it_card,
                     school_id=school_id)
    for p in principals(ctx.session, school_id):
        if all(p.id != q.id for q in team):
            queue_notice(ctx, rule=RULE_REVOCATIONS, person=p, period=progress_key(rev.id), make=progress,
                         school_id=school_id)


def after_staff_import(session: Session, *, school: School, known: Sequence[Person], was_active: set[int | None],
                       now: datetime) -> tuple[int, int]:
    """Hook of the staff import (``storage/staff_import.py``), in its transaction: open the revocation
    checklist of everyone the file moved out of service, and give newcomers their official e-mail
    address (001 Điều 5). Returns (checklists opened, addresses given)."""
    opened = 0
    for person in known:
        if person.id in was_active and person.status in DEPARTED:
            open_revocation(session, person=person, source="import", channel="cli", now=now)
            opened += 1
    known_ids = {p.id for p in known}
    newcomers = [p for p in session.exec(select(Person).where(Person.school_id == school.id)
                                         .order_by(col(Person.id))).all() if p.id not in known_ids]
    named = email_names.assign_for_newcomers(session, school=school, people=newcomers, now=now)
    return opened, named


FLOW = Flow(
    name="accounts_staff",
    command="nhansu",
    title=N_("Staff leaving"),
    description=N_("Mark someone transferred, retired or left, and have their accounts revoked"),
    icon="🚪",
    start=start,
    states={"find": find, "status": status, "confirm": confirm},
    roles=frozenset({Role.PRINCIPAL}),
    order=70,
)

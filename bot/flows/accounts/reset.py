"""``/taikhoan`` — ask for a password reset of one of *one's own* accounts (002 Điều 10, 15.2;
003 Điều 5.2; 004 Điều 10), and the IT team's buttons on the cards that follow.

The person picks one of their own accounts (the server checks the owner on every step — a forged
button naming someone else's account is refused and audited). For a system the school marks
sensitive, the principal (or the active delegate) approves first through the approval engine. The
IT team then gets a card:

* ``Tạo mật khẩu tạm`` — the bot makes a strong temporary password (:mod:`secrets`), shows it once
  to IT to set in the system, and sends it privately to the owner with ``protect_content``; both
  messages are deleted from the chats after the school's ``password_delete_minutes`` (default 10)
  by the scheduler. The owner is told to change it at first login. The password is stored nowhere.
* ``Đã cấp lại`` — IT reset it by other means; the owner is told.

Deciding is a conditional update, so two IT members tapping at once yield one reset; every card is
then edited to show who did it. The revocation checklists (``/nhansu``) use the same ``acc:``
buttons: ``Đã thu hồi`` per account, reminded daily until every item is done.

```mermaid
stateDiagram-v2
    [*] --> pick: /taikhoan (own accounts listed)
    pick --> confirm: own, active account
    pick --> pick: someone else's account (refused)
    confirm --> [*]: sent to the principal (sensitive) or to IT
```
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from sqlalchemy import update
from sqlmodel import Session, col, select

from bot.core import (
    Ctx,
    Flow,
    Handler,
    Inbound,
    Outbound,
    Reply,
    Step,
    choice,
    choice_value,
    keyboard,
)
from bot.engine import approvals
from bot.engine.reminders import Continuous, Rule, RuleRun
from bot.flows.accounts.cards import (
    DELETABLE_CHANNELS,
    PREFIX,
    account_label,
    deletable_destination,
    it_team,
    may_act_for_it,
    principals,
    refresh_reset_cards,
    refresh_revocation_cards,
    reset_card,
    revocation_card,
    send_reset_cards,
    tell,
    temporary_password,
)
from bot.flows.accounts.models import (
    Account,
    AccountReset,
    AccountStatus,
    ResetStatus,
    Revocation,
    RevocationItem,
)
from bot.flows.accounts.service import (
    accounts_of,
    claim_reset,
    delete_after_seconds,
    open_reset,
    open_revocations,
    system_for,
    tick_item,
)
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.steps import Confirm, parse_payload
from bot.text import fold, parse_id
from bot.workdays import is_working_day
from storage.models import Approval, Person, School

log = logging.getLogger(__name__)

RULE_REVOCATIONS = "accounts.revocations"
RULE_RESETS = "accounts.resets"
REMIND_FROM_HOUR = 8
CONFIRM = Confirm()


# -- helpers --------------------------------------------------------------------------------------
def _own_accounts(ctx: Ctx) -> list[Account]:
    assert ctx.person is not None and ctx.person.id is not None
    return accounts_of(ctx.session, person_id=ctx.person.id, statuses=[AccountStatus.ACTIVE, AccountStatus.LOCKED])


def _needs_approval(ctx: Ctx, acc: Account) -> bool:
    assert ctx.school is not None and ctx.person is not None
    return system_for(ctx.school, acc.system).sensitive and not ctx.person.has_role(Role.PRINCIPAL)


def _refuse_foreign(ctx: Ctx, account_id: str, reason: str) -> Step:
    ctx.audit("account.reset_refused", f"account:{account_id}", reason=reason)
    return Step.stay(Reply(ctx.t("You can only ask for a reset of your own accounts. Sharing or using someone "
                                 "else's account is not allowed (002 Điều 10.1.a).")))


# -- steps ----------------------------------------------------------------------------------------
def start(ctx: Ctx) -> Step:
    """List the person's own accounts; locked ones are shown but cannot be reset here."""
    school = ctx.school
    assert school is not None
    accounts = _own_accounts(ctx)
    if not accounts:
        return Step.done(Reply(ctx.t("No account of yours is recorded yet. If you have one on a school system, "
                                     "ask the IT team to add it.")))
    lines = [ctx.t("Which account's password should be reset? Only your own accounts are listed.")]
    buttons = []
    for acc in accounts:
        if acc.status == AccountStatus.LOCKED:
            lines.append(ctx.t("🔒 {account} is locked by the IT team; contact them first.",
                               account=account_label(ctx.tr, school, acc)))
        else:
            buttons.append(choice(account_label(ctx.tr, school, acc), f"a{acc.id}"))
    buttons.append(choice(ctx.t("Cancel"), "cancel"))
    return Step.goto("pick", Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=1)))


def pick(ctx: Ctx, msg: Inbound) -> Step:
    """An account from a button (checked: it must be the person's own, active), or the system's name."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None
    value = choice_value(msg) or ""
    if value == "cancel":
        return Step.done(Reply(ctx.t("Cancelled. Nothing was sent.")))
    acc: Account | None = None
    if value.startswith("a") and parse_id(value[1:]) is not None:
        acc = ctx.session.get(Account, int(value[1:]))
        if acc is None or acc.school_id != person.school_id or acc.person_id != person.id:
            return _refuse_foreign(ctx, value[1:], "unknown" if acc is None else "not_owner")
    elif msg.text:
        q = fold(msg.text)
        found = [a for a in _own_accounts(ctx)
                 if q and (q in fold(system_for(school, a.system).title(ctx.tr)) or q == fold(a.username))]
        if len(found) == 1:
            acc = found[0]
    if acc is None:
        return Step.stay(Reply(ctx.t("Please tap one of your accounts, or type /huy to stop.")))
    if acc.status != AccountStatus.ACTIVE:
        return Step.stay(Reply(ctx.t("That account is locked or revoked; contact the IT team.")))
    waiting = open_reset(ctx.session, account_id=acc.id or 0)
    if waiting is not None:
        return Step.done(Reply(ctx.t("A reset of this account is already under way (request #{id}).",
                                     id=waiting.id)))
    ctx.data["account_id"] = acc.id
    label = account_label(ctx.tr, school, acc)
    if _needs_approval(ctx, acc):
        text = ctx.t("Reset the password of {account}? This system is sensitive: the principal approves first, "
                     "then the IT team resets it.", account=label)
    else:
        text = ctx.t("Reset the password of {account}? The IT team will reset it.", account=label)
    return CONFIRM.ask(ctx, text)


def _send(ctx: Ctx) -> Step:
    """Record the request; to the principal for a sensitive system, else straight to IT."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None and person.id is not None and school.id is not None
    acc = ctx.session.get(Account, int(ctx.data.get("account_id") or 0))
    if acc is None or acc.person_id != person.id or acc.school_id != school.id:
        return _refuse_foreign(ctx, str(ctx.data.get("account_id")), "not_owner")
    if acc.status != AccountStatus.ACTIVE:
        return Step.done(Reply(ctx.t("That account is locked or revoked; contact the IT team.")))
    waiting = open_reset(ctx.session, account_id=acc.id or 0)
    if waiting is not None:
        return Step.done(Reply(ctx.t("A reset of this account is already under way (request #{id}).",
                                     id=waiting.id)))
    sensitive = _needs_approval(ctx, acc)
    reset = AccountReset(school_id=school.id, account_id=acc.id or 0, person_id=person.id,
                         status=ResetStatus.APPROVAL if sensitive else ResetStatus.WAITING, created_at=ctx.now)
    ctx.session.add(reset)
    ctx.session.flush()
    system = system_for(school, acc.system)
    ctx.audit("account.reset_requested", f"account_reset:{reset.id}", account=acc.id, system=acc.system,
              username=acc.username, sensitive=sensitive)
    if sensitive:
        ap = approvals.request(ctx, kind="account_reset", subject=f"account_reset:{reset.id}",
                               title=N_("Password reset"),
                               fields=[(N_("System"), system.title(ctx.tr)), (N_("User name"), acc.username)],
                               stages=[approvals.StageSpec(role=Role.PRINCIPAL)])
        reset.approval_id = ap.id
        ctx.session.add(reset)
        return Step.done(Reply(ctx.t("Request #{id} was sent to the principal for approval. Then the IT team "
                                     "resets the password; the temporary password will come to you here, "
                                     "privately.", id=reset.id)))
    send_reset_cards(ctx, reset)
    minutes = delete_after_seconds(school) // 60
    return Step.done(Reply(ctx.t("Request #{id} was sent to the IT team. The temporary password will come to "
                                 "you here, privately, and disappear after {n} minutes.", id=reset.id,
                                 n=minutes)))


confirm = CONFIRM.step(_send)


# -- after the principal's decision ---------------------------------------------------------------
def on_decided(ctx: Ctx, approval: Approval, outcome: str) -> None:
    """Approval hook: approved → the IT team gets the card; rejected → the request is closed."""
    reset = ctx.session.exec(select(AccountReset).where(AccountReset.approval_id == approval.id)).first()
    if reset is None:
        return
    new = ResetStatus.WAITING if outcome == "approved" else ResetStatus.REJECTED
    res = ctx.session.execute(update(AccountReset).where(col(AccountReset.id) == reset.id,
                                                         col(AccountReset.status) == ResetStatus.APPROVAL)
                              .values(status=new).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return
    ctx.session.refresh(reset)
    if new == ResetStatus.WAITING:
        send_reset_cards(ctx, reset)


# -- the IT team's buttons ------------------------------------------------------------------------
def _owner_password(tr: Translator, system: str, username: str, password: str, minutes: int) -> Reply:
    return Reply(tr.t("🔑 Your temporary password for {system} (user name {username}):\n<code>{password}</code>\n\n"
                      "Change it at your first login (003 Điều 5.2). Never share it with anyone, not even the IT "
                      "team (002 Điều 10.1.a). This message disappears in {n} minutes.",
                      system=system, username=username, password=password, n=minutes))


def _reset_action(ctx: Ctx, action: str, raw_id: str) -> Step:
    person = ctx.person
    assert person is not None and person.id is not None
    reset = ctx.session.get(AccountReset, int(raw_id))
    if reset is None or not may_act_for_it(ctx.session, person, reset.school_id):
        ctx.audit("account.action_refused", f"account_reset:{raw_id}", action=action)
        return Step.stay(Reply(ctx.t("Only the IT team of the school can do this.")))
    if reset.status != ResetStatus.WAITING:
        if reset.status == ResetStatus.DONE:
            return Step.stay(Reply(ctx.t("Request #{id} was already handled by {name} at {time}.", id=reset.id,
                                         name=_person_name(ctx, reset.handled_by),
                                         time=ctx.tr.datetime(reset.handled_at) if reset.handled_at else "")))
        return Step.stay(Reply(ctx.t("Request #{id} is no longer waiting for the IT team.", id=reset.id)))
    acc = ctx.session.get(Account, reset.account_id)
    owner = ctx.session.get(Person, reset.person_id)
    school = ctx.session.get(School, reset.school_id)
    assert acc is not None and school is not None
    if owner is None or not owner.is_active:
        ctx.session.execute(update(AccountReset).where(col(AccountReset.id) == reset.id,
                                                       col(AccountReset.status) == ResetStatus.WAITING)
                            .values(status=ResetStatus.CANCELLED).execution_options(synchronize_session=False))
        refresh_reset_cards(ctx, reset)
        return Step.stay(Reply(ctx.t("Request #{id} is no longer waiting for the IT team.", id=reset.id)))
    if action == "g" and ctx.inbound.channel not in DELETABLE_CHANNELS:
        return Step.stay(Reply(ctx.t("Temporary passwords are shown only in chats the assistant can delete "
                                     "(Telegram, web chat). Use one of those, or reset it another way and tap "
                                     "“Reset done”.")))
    method = "temporary" if action == "g" else "manual"
    if not claim_reset(ctx.session, reset_id=reset.id or 0, by=person.id, method=method, now=ctx.now):
        ctx.session.expire_all()
        return Step.stay(Reply(ctx.t("Request #{id} was already handled by {name} at {time}.", id=reset.id,
                                     name=_person_name(ctx, reset.handled_by),
                                     time=ctx.tr.datetime(reset.handled_at) if reset.handled_at else "")))
    refresh_reset_cards(ctx, reset)
    system_key = acc.system
    system = system_for(school, system_key)
    if action == "m":
        ctx.audit("account.reset_done", f"account_reset:{reset.id}", method="manual", account=acc.id,
                  system=system_key, username=acc.username, owner=owner.id)
        ctx.send_to(owner, lambda tr: Reply(tr.t(
            "🔑 The IT team has reset the password of your account {username} on {system}. They will give you the "
            "temporary password; change it at your first login (003 Điều 5.2).",
            username=acc.username, system=system.title(tr))))
        return Step.stay(Reply(ctx.t("Recorded: request #{id} was reset by other means. The owner has been told.",
                                     id=reset.id)))
    seconds = delete_after_seconds(school)
    minutes = seconds // 60
    password = temporary_password()
    dest = deletable_destination(ctx.session, owner)
    if dest is not None:
        otr = ctx.translator_for(owner)
        r = _owner_password(otr, system.title(otr), acc.username, password, minutes)
        ctx.outbox.append(Outbound(dest[0], dest[1], Reply(r.text, protect=True, delete_after=seconds), owner.id))
        note = ctx.t("It was also sent privately to {name}; both messages disappear in {n} minutes.",
                     name=owner.full_name, n=minutes)
    else:
        ctx.send_to(owner, lambda tr: Reply(tr.t(
            "🔑 The IT team has reset the password of your account {username} on {system}. They will give you the "
            "temporary password in person; change it at your first login (003 Điều 5.2).",
            username=acc.username, system=system.title(tr))))
        note = ctx.t("{name} cannot receive it in a chat the assistant can delete: give it to them in person. This "
                     "message disappears in {n} minutes.", name=owner.full_name, n=minutes)
    ctx.audit("account.reset_done", f"account_reset:{reset.id}", method="temporary", account=acc.id,
              system=system_key, username=acc.username, owner=owner.id,
              delivered="chat" if dest is not None else "in_person", delete_after_s=seconds)
    text = ctx.t("🔐 Temporary password for {username} on {system}:\n<code>{password}</code>\n\nSet it in the system "
                 "now, with “change at first login” if the system offers it.", username=acc.username,
                 system=system.title(ctx.tr), password=password)
    return Step.stay(Reply(text + "\n" + note, protect=True, delete_after=seconds))


def _person_name(ctx: Ctx, person_id: int | None) -> str:
    p = ctx.session.get(Person, person_id) if person_id else None
    return p.full_name if p else "?"


def _revoke_action(ctx: Ctx, raw_id: str) -> Step:
    person = ctx.person
    assert person is not None and person.id is not None
    item = ctx.session.get(RevocationItem, int(raw_id))
    if item is None or not may_act_for_it(ctx.session, person, item.school_id):
        ctx.audit("account.action_refused", f"revocation_item:{raw_id}", action="v")
        return Step.stay(Reply(ctx.t("Only the IT team of the school can do this.")))
    acc = ctx.session.get(Account, item.account_id)
    rev = ctx.session.get(Revocation, item.revocation_id)
    school = ctx.session.get(School, item.school_id)
    assert acc is not None and rev is not None and school is not None
    label = account_label(ctx.tr, school, acc)
    if item.done_at is not None:
        return Step.stay(Reply(ctx.t("{account} was already revoked by {name} at {time}.", account=label,
                                     name=_person_name(ctx, item.done_by), time=ctx.tr.datetime(item.done_at))))
    if not tick_item(ctx.session, item=item, by=person.id, now=ctx.now):
        ctx.session.refresh(item)
        return Step.stay(Reply(ctx.t("{account} was already revoked by {name} at {time}.", account=label,
                                     name=_person_name(ctx, item.done_by),
                                     time=ctx.tr.datetime(item.done_at) if item.done_at else "")))
    ctx.audit("account.revoked", f"account:{acc.id}", revocation=rev.id, person=rev.person_id, system=acc.system,
              username=acc.username)
    ctx.session.refresh(rev)
    refresh_revocation_cards(ctx, rev)
    replies = [Reply(ctx.t("Recorded: {account} is revoked.", account=label))]
    if rev.closed_at is not None:
        owner = ctx.session.get(Person, rev.person_id)
        name = owner.full_name if owner else "?"
        ctx.audit("account.revocation_closed", f"revocation:{rev.id}", person=rev.person_id)
        tell(ctx, principals(ctx.session, rev.school_id), lambda tr: Reply(tr.t(
            "✅ Every account of {name} is revoked (checklist #{id}).", name=name, id=rev.id)))
        replies.append(Reply(ctx.t("✅ Checklist #{id} is complete: every account of {name} is revoked.",
                                   id=rev.id, name=name)))
    return Step.stay(*replies)


def on_action(ctx: Ctx) -> Step:
    """``acc:g:<reset>`` / ``acc:m:<reset>`` / ``acc:v:<item>`` — the payload only names the thing;
    the server checks the role, the school and the state."""
    parsed = parse_payload(ctx.inbound.payload, PREFIX, ("g", "m", "v"), action_first=True)
    if parsed is None:
        ctx.audit("account.action_refused", "", reason="malformed", payload=(ctx.inbound.payload or "")[:64])
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    if parsed.action == "v":
        return _revoke_action(ctx, str(parsed.id))
    return _reset_action(ctx, parsed.action, str(parsed.id))


# -- reminders ------------------------------------------------------------------------------------
def card_key(rev_id: int | None) -> str:
    return f"revocation:{rev_id}:card"


def progress_key(rev_id: int | None) -> str:
    return f"revocation:{rev_id}:progress"


def remind_revocations(run: RuleRun) -> None:
    """Every open checklist: the card to IT and the principal once (a checklist opened by the staff
    import has not been sent yet), then a reminder to IT each working day until it is complete."""
    session = run.session
    today = run.today()
    team = run.recipients() or principals(session, run.school.id or 0)
    for rev in open_revocations(session, school_id=run.school.id or 0):
        card = _revocation_maker(session, rev, buttons=True)
        for p in team:
            run.notify(p, card, key=card_key(rev.id))
        for p in principals(session, rev.school_id):
            if not any(p.id == q.id for q in team):
                run.notify(p, _revocation_maker(session, rev, buttons=False), key=progress_key(rev.id))
        opened = rev.opened_at.astimezone(run.ctx.tr.tz).date()
        if today > opened and _reminding_now(run):
            reminder = _revocation_maker(session, rev, buttons=True,
                                         prefix=N_("⏰ Reminder: these accounts are still to be revoked."))
            for p in team:
                run.notify(p, reminder, key=f"revocation:{rev.id}:{today.isoformat()}")


def _reminding_now(run: RuleRun) -> bool:
    """Daily reminders go out on working days (weekends, holidays and Tết skipped) from 08:00."""
    return is_working_day(run.today(), run.days_off) and run.local_now().hour >= REMIND_FROM_HOUR


def _revocation_maker(session: Session, rev: Revocation, *, buttons: bool,
                      prefix: str | None = None) -> Callable[[Translator], Reply]:
    def make(tr: Translator) -> Reply:
        return revocation_card(session, tr, rev, buttons=buttons, prefix=prefix)
    return make


def remind_resets(run: RuleRun) -> None:
    """A reset still waiting for IT since an earlier day: the card again, once a day."""
    session = run.session
    today = run.today()
    if not _reminding_now(run):
        return
    rows = session.exec(select(AccountReset).where(AccountReset.school_id == run.school.id,
                                                   AccountReset.status == ResetStatus.WAITING)
                        .order_by(col(AccountReset.id))).all()
    team = run.recipients() or it_team(session, run.school.id or 0)
    for reset in rows:
        if reset.created_at.astimezone(run.ctx.tr.tz).date() >= today:
            continue
        for p in team:
            run.notify(p, _reset_reminder(session, reset), key=f"reset:{reset.id}:{today.isoformat()}")


def _reset_reminder(session: Session, reset: AccountReset) -> Callable[[Translator], Reply]:
    def make(tr: Translator) -> Reply:
        r = reset_card(session, tr, reset, buttons=True)
        return Reply(tr.t("⏰ Reminder: this password reset is still waiting.") + "\n\n" + r.text,
                     buttons=r.buttons, track=r.track)
    return make


RULES = [
    Rule(RULE_REVOCATIONS, title=N_("Accounts still to revoke after someone left"), schedule=Continuous(),
         fn=remind_revocations, roles=(Role.IT,), regulation="002 Điều 10.1.c", order=60),
    Rule(RULE_RESETS, title=N_("Password resets waiting for the IT team"), schedule=Continuous(),
         fn=remind_resets, roles=(Role.IT,), regulation="004 Điều 10", order=61),
]


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(on_action, prefix=PREFIX),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = ()


FLOW = Flow(
    name="accounts",
    command="taikhoan",
    title=N_("Password reset"),
    description=N_("Ask the IT team to reset the password of one of your accounts"),
    icon="🔑",
    start=start,
    states={"pick": pick, "confirm": confirm},
    order=50,
)

APPROVAL_HOOKS = {"account_reset": on_decided}

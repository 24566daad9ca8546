"""``/quanlytk`` — the IT team (and the principal) keep the account list and lock accounts on a
security problem (004 Điều 10.3; 002 Điều 7.2, 15.2).

Find a person by part of their name (or an account's user name) → their accounts → ``➕ Thêm tài
khoản`` (system, then user name — never a password), ``🔒 Khóa`` (with a reason: the owner and the
principal are told) or ``🔓 Mở khóa`` (recorded; the owner is told). Large lists come from
``python main.py import-accounts FILE``.

```mermaid
stateDiagram-v2
    [*] --> find: /quanlytk
    find --> person: one person found
    person --> reason: Khóa
    reason --> person: reason given (locked, owner + principal told)
    person --> person: Mở khóa
    person --> system: Thêm tài khoản
    system --> username: system chosen
    username --> person: saved
    person --> [*]: Xong
```
"""

from __future__ import annotations

from sqlmodel import col, select

from bot.core import Ctx, Flow, Inbound, Reply, Step, choice, choice_value, keyboard
from bot.flows.accounts.cards import account_label, principals, tell
from bot.flows.accounts.models import Account, AccountStatus
from bot.flows.accounts.service import accounts_of, add_account, set_lock, system_for, systems
from bot.i18n import N_, Translator, escape
from bot.roles import Role
from bot.steps import PersonPicker
from bot.text import clean, fold, parse_id
from storage.models import Person, PersonStatus, School

MAX_MATCHES = 10
MAX_REASON = 300
MAX_USERNAME = 120
PICKER = PersonPicker(limit=MAX_MATCHES)

_STATUS_ICON: dict[str, str] = {AccountStatus.ACTIVE: "✅", AccountStatus.LOCKED: "🔒", AccountStatus.REVOKED: "🚫"}


def _school(ctx: Ctx) -> School:
    assert ctx.school is not None
    return ctx.school


def _target(ctx: Ctx) -> Person | None:
    p = ctx.session.get(Person, int(ctx.data.get("person_id") or 0))
    if p is None or ctx.person is None or p.school_id != ctx.person.school_id:
        return None
    return p


def _own_account(ctx: Ctx, raw: str) -> Account | None:
    """The account ``raw`` of the person being managed (checked on the server)."""
    target = _target(ctx)
    if target is None or parse_id(raw) is None:
        return None
    acc = ctx.session.get(Account, int(raw))
    if acc is None or acc.person_id != target.id or acc.school_id != target.school_id:
        return None
    return acc


def start(ctx: Ctx) -> Step:
    """Ask whose accounts to manage."""
    return Step.goto("find", Reply(ctx.t("Whose accounts? Type part of the person's name, or a user name.")))


def find(ctx: Ctx, msg: Inbound) -> Step:
    """By part of the name (diacritics forgiven), by a user name, or from the buttons."""
    person = ctx.person
    assert person is not None
    people = list(ctx.session.exec(select(Person).where(Person.school_id == person.school_id)
                                   .order_by(col(Person.full_name), col(Person.id))).all())

    def by_username(text: str) -> list[Person]:
        q = fold(text)
        ids = {a.person_id for a in ctx.session.exec(select(Account).where(
            Account.school_id == person.school_id)).all() if fold(a.username) == q}
        return [p for p in people if p.id in ids]

    found = PICKER.answer(ctx, msg, people, also=by_username)
    if isinstance(found, Reply):
        return Step.stay(found)
    ctx.data["person_id"] = found.id
    return Step.goto("person", _card(ctx))


def _card(ctx: Ctx, note: str | None = None) -> Reply:
    target = _target(ctx)
    school = _school(ctx)
    assert target is not None and target.id is not None
    lines = [note, ""] if note else []
    lines.append(ctx.t("<b>Accounts of {name}</b>", name=target.full_name + (f" ({target.unit})" if target.unit
                                                                               else "")))
    if target.status != PersonStatus.ACTIVE:
        lines.append(ctx.t("No longer in service: accounts cannot be added or unlocked."))
    accounts = accounts_of(ctx.session, person_id=target.id)
    if not accounts:
        lines.append(ctx.t("No account recorded."))
    buttons = []
    for acc in accounts:
        line = escape(f"{_STATUS_ICON.get(acc.status, '')} {account_label(ctx.tr, school, acc)}")
        if acc.status == AccountStatus.LOCKED and acc.locked_reason:
            line += " — " + ctx.t("locked: {reason}", reason=acc.locked_reason)
        lines.append(line)
        if acc.status == AccountStatus.ACTIVE:
            buttons.append(choice(ctx.t("🔒 Lock {account}", account=account_label(ctx.tr, school, acc)),
                                  f"l{acc.id}"))
        elif acc.status == AccountStatus.LOCKED and target.is_active:
            buttons.append(choice(ctx.t("🔓 Unlock {account}", account=account_label(ctx.tr, school, acc)),
                                  f"u{acc.id}"))
    if target.is_active:
        buttons.append(choice(ctx.t("➕ Add an account"), "add"))
    buttons.append(choice(ctx.t("✅ Done"), "done"))
    return Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=1))


def person(ctx: Ctx, msg: Inbound) -> Step:
    """Lock / unlock one of the person's accounts, add one, or finish."""
    value = choice_value(msg) or ""
    target = _target(ctx)
    if target is None:
        return Step.done(Reply(ctx.t("That person is not in your school's staff list.")))
    if value == "done":
        return Step.done(Reply(ctx.t("Done.")))
    if value == "add" and target.is_active:
        return Step.goto("system", Reply(ctx.t("Which system?"), buttons=keyboard(
            *[choice(s.title(ctx.tr), f"s:{s.key}") for s in systems(_school(ctx))],
            choice(ctx.t("↩️ Back"), "back"), per_row=2)))
    if value[:1] in ("l", "u"):
        acc = _own_account(ctx, value[1:])
        if acc is None:
            ctx.audit("account.action_refused", f"account:{value[1:]}", action=value[:1])
            return Step.stay(Reply(ctx.t("That account does not belong to this person.")), _card(ctx))
        if value[0] == "l":
            if acc.status != AccountStatus.ACTIVE:
                return Step.stay(_card(ctx, ctx.t("That account is not active.")))
            ctx.data["account_id"] = acc.id
            return Step.goto("reason", Reply(ctx.t("Why lock {account}? The owner and the principal will see the "
                                                   "reason.", account=account_label(ctx.tr, _school(ctx), acc))))
        return _unlock(ctx, acc, target)
    return Step.stay(Reply(ctx.t("Please choose one of the buttons, or type /huy to stop.")))


def reason(ctx: Ctx, msg: Inbound) -> Step:
    """Lock with the reason; the owner and the principal are told (004 Điều 10.3)."""
    text = clean(msg.text or "")
    if choice_value(msg) == "back":
        return Step.goto("person", _card(ctx))
    if not text or len(text) > MAX_REASON:
        return Step.stay(Reply(ctx.t("Please give the reason in at most {max} characters.", max=MAX_REASON)))
    acc = _own_account(ctx, str(ctx.data.get("account_id") or ""))
    target = _target(ctx)
    actor = ctx.person
    assert actor is not None
    if acc is None or target is None:
        return Step.done(Reply(ctx.t("That account does not belong to this person.")))
    school = _school(ctx)
    if not set_lock(ctx.session, account=acc, locked=True, by=actor.id, reason=text, now=ctx.now):
        return Step.goto("person", _card(ctx, ctx.t("That account is not active.")))
    ctx.audit("account.locked", f"account:{acc.id}", person=target.id, system=acc.system, username=acc.username,
              reason=text)

    def to_owner(tr: Translator) -> Reply:
        return Reply(tr.t("🔒 Your account {username} on {system} was locked by the IT team: {reason}. Contact "
                          "the IT team; do not use the account until it is unlocked.", username=acc.username,
                          system=system_for(school, acc.system).title(tr), reason=text))

    def to_principal(tr: Translator) -> Reply:
        return Reply(tr.t("🔒 {actor} locked the account {username} on {system} of {owner}: {reason}",
                          actor=actor.full_name, username=acc.username,
                          system=system_for(school, acc.system).title(tr), owner=target.full_name, reason=text))

    if target.is_active and target.id != actor.id:
        ctx.send_to(target, to_owner)
    tell(ctx, principals(ctx.session, school.id or 0), to_principal, skip=actor)
    return Step.goto("person", _card(ctx, ctx.t("Locked. The owner and the principal have been told.")))


def _unlock(ctx: Ctx, acc: Account, target: Person) -> Step:
    actor = ctx.person
    assert actor is not None
    school = _school(ctx)
    if not target.is_active:
        return Step.stay(_card(ctx, ctx.t("No longer in service: accounts cannot be added or unlocked.")))
    if not set_lock(ctx.session, account=acc, locked=False, by=actor.id, reason="", now=ctx.now):
        return Step.stay(_card(ctx, ctx.t("That account is not locked.")))
    ctx.audit("account.unlocked", f"account:{acc.id}", person=target.id, system=acc.system, username=acc.username,
              was_locked_for=acc.locked_reason)

    def to_owner(tr: Translator) -> Reply:
        return Reply(tr.t("🔓 Your account {username} on {system} was unlocked by {actor}. If you do not know its "
                          "password, ask for a reset with /taikhoan.", username=acc.username,
                          system=system_for(school, acc.system).title(tr), actor=actor.full_name))

    def to_principal(tr: Translator) -> Reply:
        return Reply(tr.t("🔓 {actor} unlocked the account {username} on {system} of {owner}.", actor=actor.full_name,
                          username=acc.username, system=system_for(school, acc.system).title(tr),
                          owner=target.full_name))

    if target.id != actor.id:
        ctx.send_to(target, to_owner)
    tell(ctx, principals(ctx.session, school.id or 0), to_principal, skip=actor)
    return Step.stay(_card(ctx, ctx.t("Unlocked. The owner has been told.")))


def system(ctx: Ctx, msg: Inbound) -> Step:
    """The system of the new account (a button, or its name typed)."""
    value = choice_value(msg) or ""
    if value == "back":
        return Step.goto("person", _card(ctx))
    school = _school(ctx)
    chosen = None
    if value.startswith("s:"):
        chosen = next((s for s in systems(school) if s.key == value[2:]), None)
    elif msg.text:
        from bot.flows.accounts.service import find_system

        chosen = find_system(school, msg.text)
    if chosen is None:
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    ctx.data["system"] = chosen.key
    return Step.goto("username", Reply(ctx.t("The user name on {system}? (Only the user name — never send a "
                                             "password here.)", system=chosen.title(ctx.tr))))


def username(ctx: Ctx, msg: Inbound) -> Step:
    """Record the account (a user name belongs to one person only: 002 Điều 10.1.a)."""
    name = clean(msg.text or "").replace(" ", "")
    if not name or len(name) > MAX_USERNAME:
        return Step.stay(Reply(ctx.t("Please send the user name (at most {max} characters, no spaces).",
                                     max=MAX_USERNAME)))
    target = _target(ctx)
    school = _school(ctx)
    key = str(ctx.data.get("system") or "")
    if target is None or target.id is None or not target.is_active or key not in {s.key for s in systems(school)}:
        return Step.done(Reply(ctx.t("That person is not in your school's staff list.")))
    acc, problem = add_account(ctx.session, school_id=target.school_id, person_id=target.id, system=key,
                               username=name, now=ctx.now)
    if problem == "taken":
        owner = ctx.session.get(Person, acc.person_id) if acc else None
        return Step.stay(Reply(ctx.t("The user name {username} on this system belongs to {name}. An account "
                                     "is never shared (002 Điều 10.1.a); send another user name.",
                                     username=name, name=owner.full_name if owner else "?")))
    if problem == "exists":
        return Step.goto("person", _card(ctx, ctx.t("That account was already recorded.")))
    assert acc is not None
    ctx.audit("account.added", f"account:{acc.id}", person=target.id, system=key, username=name)
    return Step.goto("person", _card(ctx, ctx.t("Recorded: {account}.", account=account_label(ctx.tr, school, acc))))


FLOW = Flow(
    name="accounts_admin",
    command="quanlytk",
    title=N_("Manage accounts"),
    description=N_("Record, lock and unlock the accounts of the school's systems"),
    icon="🗝",
    start=start,
    states={"find": find, "person": person, "reason": reason, "system": system, "username": username},
    roles=frozenset({Role.IT, Role.PRINCIPAL}),
    order=60,
)

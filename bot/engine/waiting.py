"""Cards kept for people who have not linked a chat account yet.

An approval card or an incident card addressed to someone with no linked channel is not lost: it is
kept as a :class:`storage.models.WaitingCard` (one row per person and card, :func:`keep`) and
delivered — as it stands *then*, with working buttons — when that person links. Linking runs
``Registry.person_linked_hooks`` (the approval engine's and the workflows' deliverers, which
:func:`claim` their rows); the scheduler's :func:`sweep` runs them too for anyone who has cards
waiting and a linked channel (linked on the web chat, or in the very moment a card was kept).

* **Once:** claiming is a conditional ``UPDATE … SET delivered_at WHERE delivered_at IS NULL``, so two
  processes (or a link and the sweep) never both deliver a card, and linking a second channel
  delivers nothing again.
* **IT is told once** who must link, and how (:func:`tell_once`): a ``notice`` marker under the key
  ``link.needed|-|person:<id>``, inserted with ``ON CONFLICT DO NOTHING`` in the unit that kept the
  card; only the unit whose insert wins sends the message.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import update
from sqlalchemy.dialects import postgresql as pg_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlmodel import Session, col, select

from bot.core import Ctx, Reply, destinations
from bot.i18n import Translator
from bot.roles import ROLE_TITLES, Role
from storage.models import ChannelIdentity, Notice, NoticeStatus, Person, School, WaitingCard
from storage.people import people_with_role

log = logging.getLogger(__name__)

#: the notice rule of the "please help them link" message to IT (and of its once-only marker)
RULE = "link.needed"


def _insert(session: Session, table: Any, values: dict[str, Any], *, index: list[str],
            revive: dict[str, Any] | None = None, revive_where: Any = None) -> bool:
    """``INSERT … ON CONFLICT (index) DO NOTHING`` (or ``DO UPDATE SET revive WHERE revive_where``);
    True when a row was inserted or revived."""
    dialect = session.get_bind().dialect
    ins = pg_dialect.insert if dialect.name == "postgresql" else sqlite_dialect.insert
    stmt = ins(table).values(**values)
    if revive:
        stmt = stmt.on_conflict_do_update(index_elements=index, set_=revive, where=revive_where)
    else:
        stmt = stmt.on_conflict_do_nothing(index_elements=index)
    result = session.execute(stmt)
    return bool(result.rowcount)  # type: ignore[attr-defined]


# -- keeping --------------------------------------------------------------------------------------
def keep(ctx: Ctx, person: Person, kind: str, ref_id: int | str | None, *, prefix: str | None = None) -> bool:
    """Keep the card ``kind``/``ref_id`` for ``person`` (who has no linked channel) until they link,
    and tell the school's IT team once that they must link. True when it is newly kept (a card already
    waiting keeps its first prefix; one delivered earlier waits again)."""
    if person.id is None or ref_id is None or not person.is_active:
        return False
    table = WaitingCard.__table__  # type: ignore[attr-defined]
    kept = _insert(ctx.session, table,
                   {"school_id": person.school_id, "person_id": person.id, "ref_kind": kind, "ref_id": str(ref_id),
                    "prefix": (prefix or "")[:200], "created_at": ctx.now, "delivered_at": None},
                   index=["person_id", "ref_kind", "ref_id"],
                   revive={"delivered_at": None, "prefix": (prefix or "")[:200], "created_at": ctx.now},
                   revive_where=table.c.delivered_at.is_not(None))
    if kept:
        log.info("a %s card is kept for person %s until they link", kind, person.id)
    tell_once(ctx, person)
    return kept


def claim(ctx: Ctx, person: Person, kind: str) -> list[tuple[str, str]]:
    """The ``kind`` cards kept for ``person``, marked delivered by this unit: ``(ref_id, prefix)``
    oldest first. Another unit claiming at the same time gets none of these."""
    if person.id is None:
        return []
    rows = ctx.session.execute(
        update(WaitingCard)
        .where(col(WaitingCard.person_id) == person.id, col(WaitingCard.ref_kind) == kind,
               col(WaitingCard.delivered_at).is_(None))
        .values(delivered_at=ctx.now)
        .returning(col(WaitingCard.id), col(WaitingCard.ref_id), col(WaitingCard.prefix))
        .execution_options(synchronize_session=False)).all()
    return [(ref_id, prefix) for _, ref_id, prefix in sorted(rows)]


def mark_delivered(ctx: Ctx, person: Person, kind: str, ref_id: int | str) -> bool:
    """Record that the card is delivered to ``person`` now, when it was never kept for them (e.g. made
    before cards were kept); False when a row exists — kept, claimed or delivered by someone else."""
    if person.id is None:
        return False
    return _insert(ctx.session, WaitingCard.__table__,  # type: ignore[attr-defined]
                   {"school_id": person.school_id, "person_id": person.id, "ref_kind": kind, "ref_id": str(ref_id),
                    "prefix": "", "created_at": ctx.now, "delivered_at": ctx.now},
                   index=["person_id", "ref_kind", "ref_id"])


def waiting_for(session: Session, person: Person, kind: str | None = None) -> list[WaitingCard]:
    """The cards still kept for ``person`` (all kinds, or one)."""
    q = select(WaitingCard).where(WaitingCard.person_id == person.id, col(WaitingCard.delivered_at).is_(None))
    if kind is not None:
        q = q.where(WaitingCard.ref_kind == kind)
    return list(session.exec(q.order_by(col(WaitingCard.id))))


# -- delivering -----------------------------------------------------------------------------------
def run_linked_hooks(ctx: Ctx, person: Person) -> None:
    """Deliver what was kept for ``person``, who has just linked (each hook claims its own rows)."""
    for hook in ctx.registry.person_linked_hooks:
        hook(ctx, person)


def sweep(ctx: Ctx) -> None:
    """Scheduler job: people with cards still kept and, by now, a linked channel get them (a link
    made on the web chat, or committed in the moment a card was being kept)."""
    linked = (select(ChannelIdentity.id).where(col(ChannelIdentity.person_id) == col(WaitingCard.person_id),
                                               col(ChannelIdentity.active).is_(True)).exists())
    ids = sorted(set(ctx.session.exec(select(WaitingCard.person_id)
                                      .where(col(WaitingCard.delivered_at).is_(None), linked)).all()))
    n = 0
    for pid in ids:
        person = ctx.session.get(Person, pid)
        if person is None or not person.is_active or not destinations(ctx.session, person):
            continue
        ctx.school = ctx.session.get(School, person.school_id)
        run_linked_hooks(ctx, person)
        n += 1
    ctx.school = None
    if n:
        log.info("delivered the cards kept for %d person(s) who have linked", n)


# -- telling IT -----------------------------------------------------------------------------------
def role_titles(tr: Translator, person: Person) -> str:
    titles = []
    for r in person.roles:
        try:
            titles.append(tr.t(ROLE_TITLES[Role(r)]))
        except (ValueError, KeyError):
            continue
    return ", ".join(titles) or tr.t("staff member")


def _link_help(tr: Translator, person: Person) -> Reply:
    return Reply(tr.t(
        "🔗 {name} ({roles}) has not linked the assistant yet, so what is addressed to them — requests to "
        "approve, incident reports — waits for them. They get it as soon as they link.\n"
        "Please help them link: they open the school's bot on Telegram, tap Start and share their phone "
        "number (it is checked against the staff list); or make them a link code with "
        "<code>python main.py invite --person PHONE</code> (their number on the staff list), which they "
        "send as a message to the school's bot on Zalo or Telegram.",
        name=person.full_name, roles=role_titles(tr, person)))


def tell_once(ctx: Ctx, person: Person) -> bool:
    """Tell the school's IT team (without one: the principal) who must link and how — once per person,
    whichever process and however many cards. False when they were told before (or nobody can be told
    now: then the next card kept tries again)."""
    team = [p for p in people_with_role(ctx.session, school_id=person.school_id, role=Role.IT) if p.id != person.id]
    team = [p for p in team if destinations(ctx.session, p)]
    if not team:
        team = [p for p in people_with_role(ctx.session, school_id=person.school_id, role=Role.PRINCIPAL)
                if p.id != person.id and destinations(ctx.session, p)]
    if not team:
        return False
    key = f"{RULE}|-|person:{person.id}"
    table = Notice.__table__  # type: ignore[attr-defined]
    first = _insert(ctx.session, table,
                    {"key": key, "school_id": person.school_id, "rule": RULE, "person_id": None,
                     "period": f"person:{person.id}", "status": NoticeStatus.DONE.value, "channel": "", "chat_id": "",
                     "payload": {}, "attempts": 0, "created_at": ctx.now, "sent_at": ctx.now},
                    index=["key"])
    if not first:
        return False
    for p in team:
        ctx.send_to(p, lambda tr: _link_help(tr, person))
    ctx.audit("identity.link_needed", f"person:{person.id}", told=[p.id for p in team])
    return True


__all__ = ["RULE", "claim", "keep", "mark_delivered", "role_titles", "run_linked_hooks", "sweep", "tell_once",
           "waiting_for"]

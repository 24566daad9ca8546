"""The editorial pipeline after an article is submitted (seed 001 Điều 14, 15.2, 22.1.1).

The secretary gets a card for each submitted article: **📤 Chuyển duyệt** (to the board head, the
board member mapped to the category, or the principal, as the school chose), **📤 Ngoài kế
hoạch → Trưởng ban** (outside the activity plan: the board head decides), **↩️ Trả lại** (with a
note) or **✏️ Gửi bản đã sửa** (the corrected text becomes a new version). The approver decides on
the approval engine's card; after approval the secretary gets **🌐 Đăng bài** and sends the
published link, which is checked. The author is told at every stage. Deadlines (event + 3 days)
are reminded by the ``articles.deadline`` rule; late publication is marked.

```mermaid
stateDiagram-v2
    draft --> submitted: author sends (version 1)
    submitted --> submitted: secretary sends a corrected text (new version)
    submitted --> returned: Trả lại + note
    returned --> submitted: author revises and resends (new version)
    submitted --> in_review: Chuyển duyệt / Ngoài kế hoạch
    in_review --> approved: approver ✅ (approval engine)
    in_review --> rejected: approver ❌ + reason
    rejected --> submitted: author revises and resends
    approved --> published: Đăng bài + link (late if after the deadline)
```

Every button carries only ``ar:<article id>:<action>``; the server checks the person's role and
school and the article's state, and state changes are conditional updates, so two secretaries, a
double tap or a stale card change nothing twice.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

from sqlalchemy import update
from sqlmodel import col, select

from bot.core import (
    Button,
    Ctx,
    Flow,
    Inbound,
    MessageRef,
    Outbound,
    OutFile,
    Reply,
    Step,
    choice,
    choice_value,
    keyboard,
)
from bot.engine import approvals
from bot.engine.reminders import Continuous, Rule, RuleRun
from bot.flows.articles.models import Article, ArticleStatus, ArticleVersion
from bot.flows.articles.service import (
    EDITABLE,
    MAX_BODY,
    MAX_NOTE,
    MAX_TITLE,
    ORIGIN_COLLECTED,
    PIPELINE,
    READER_ROLES,
    approver_stage,
    category_title,
    check_url,
    is_late,
    is_secretary,
    secretaries,
    settings_of,
    short,
    status_title,
)
from bot.i18n import N_, Translator, escape
from bot.roles import ROLE_TITLES, Role
from bot.steps import parse_payload as parse_payload_of
from bot.text import clean, fold, nfc, parse_id
from storage.models import Approval, ApprovalStatus, Person, SentMessage

PREFIX = "ar"
CARD = "article"
ACTIONS = frozenset({"fwd", "head", "ret", "edit", "full", "pub", "rev"})
SECRETARY_ACTIONS = frozenset({"fwd", "head", "ret", "edit", "pub"})
PREVIEW = 600
MAX_PHOTOS_SHOWN = 10


def payload(article_id: int, action: str) -> str:
    return f"{PREFIX}:{article_id}:{action}"


def parse_payload(data: str | None) -> tuple[int, str] | None:
    parsed = parse_payload_of(data, PREFIX, ACTIONS)
    return (parsed.id, parsed.action) if parsed else None


def is_done_word(text: str | None) -> bool:
    """``Xong`` as people type it (``xong``, ``XONG.``, ``Xong!``, ``done``)."""
    return fold(text or "").strip(" .!") in ("xong", "done", "het", "xong roi")


# -- rendering ------------------------------------------------------------------------------------
def _name(ctx: Ctx, person_id: int | None) -> str:
    p = ctx.session.get(Person, person_id) if person_id else None
    return p.full_name if p else "?"


def details(ctx: Ctx, tr: Translator, art: Article) -> list[str]:
    """The article's facts, one line each (safe HTML)."""
    author = ctx.session.get(Person, art.author_id)
    who = (author.full_name + (f" ({author.unit})" if author.unit else "")) if author else "?"
    lines = [tr.t("Author: {name}", name=who),
             tr.t("Category: {category}", category=category_title(tr, art.category) if art.category else "—"),
             tr.t("On behalf of: {unit}", unit=art.unit or tr.t("Personal"))]
    if art.origin == ORIGIN_COLLECTED:
        lines.append(tr.t("Collected from: {source}", source=art.source))
    else:
        lines.append(tr.t("Own text"))
    if art.event_date is not None and art.deadline is not None:
        lines.append(tr.t("Event: {event} · publish by {deadline}", event=tr.date(art.event_date),
                          deadline=tr.date(art.deadline)))
    else:
        lines.append(tr.t("Not tied to an event"))
    lines.append(tr.tn("{n} photo", "{n} photos", len(art.photos or [])))
    return lines


def preview(tr: Translator, body: str, n: int = PREVIEW) -> str:
    body = body.strip()
    return escape(body if len(body) <= n else body[:n].rstrip() + "…")


def card_text(ctx: Ctx, tr: Translator, art: Article, lead: str | None = None) -> str:
    lines = []
    if lead:
        lines += [lead, ""]
    lines.append(tr.t("📰 <b>Article #{id}</b> · version {v}", id=art.id, v=art.version))
    lines.append(tr.t("<b>{title}</b>", title=art.title))
    lines += details(ctx, tr, art)
    lines.append(tr.t("Status: {status}", status=status_title(tr, art.status)))
    if art.status in (ArticleStatus.RETURNED, ArticleStatus.REJECTED) and art.note:
        lines.append(tr.t("Note: {note}", note=art.note))
    if art.status == ArticleStatus.PUBLISHED:
        lines.append(tr.t("Published at {time} by {name}: {url}", time=tr.datetime(art.published_at),
                          name=_name(ctx, art.published_by), url=art.published_url)
                     if art.published_at else "")
        if art.late:
            lines.append(tr.t("⚠️ Published after the deadline."))
    elif art.status == ArticleStatus.APPROVED and art.approved_by:
        lines.append(tr.t("✅ Approved by {name}.", name=_name(ctx, art.approved_by)))
    lines += ["", preview(tr, art.body)]
    return "\n".join(x for x in lines if x is not None)


def card_buttons(tr: Translator, art: Article) -> tuple[tuple[Button, ...], ...]:
    assert art.id is not None
    aid = art.id
    if art.status == ArticleStatus.SUBMITTED:
        return keyboard([Button(tr.t("📤 Forward for approval"), payload(aid, "fwd"))],
                        [Button(tr.t("📤 Outside the plan → board head"), payload(aid, "head"))],
                        [Button(tr.t("↩️ Return"), payload(aid, "ret")),
                         Button(tr.t("✏️ Send corrected text"), payload(aid, "edit"))],
                        [Button(tr.t("📎 Full text and photos"), payload(aid, "full"))])
    if art.status == ArticleStatus.APPROVED:
        return keyboard([Button(tr.t("🌐 Publish"), payload(aid, "pub"))],
                        [Button(tr.t("📎 Full text and photos"), payload(aid, "full"))])
    return ()


def secretary_card(ctx: Ctx, tr: Translator, art: Article, lead: str | None = None) -> Reply:
    return Reply(card_text(ctx, tr, art, lead), buttons=card_buttons(tr, art), track=(CARD, str(art.id)))


def send_cards(ctx: Ctx, art: Article, lead: str | None = None, only: Person | None = None) -> int:
    """A new card to every secretary (or only to ``only``); ``lead`` is a msgid with ``{id}``."""
    people = [only] if only is not None else secretaries(ctx.session, art.school_id)
    sent = 0
    for p in people:
        def make(tr: Translator) -> Reply:
            return secretary_card(ctx, tr, art, tr.t(lead, id=art.id) if lead else None)
        if ctx.send_to(p, make):
            sent += 1
    return sent


def refresh_cards(ctx: Ctx, art: Article) -> None:
    """Edit every secretary card of this article to its current state (buttons only while useful)."""
    rows = ctx.session.exec(select(SentMessage).where(SentMessage.ref_kind == CARD,
                                                      SentMessage.ref_id == str(art.id))).all()
    for row in rows:
        person = ctx.session.get(Person, row.person_id) if row.person_id else None
        tr = ctx.translator_for(person) if person else ctx.tr
        r = secretary_card(ctx, tr, art)
        ctx.outbox.append(Outbound(row.channel, row.chat_id,
                                   Reply(r.text, buttons=r.buttons,
                                         edit=MessageRef(row.channel, row.chat_id, row.message_id)),
                                   row.person_id))


def tell_author(ctx: Ctx, art: Article, make: Callable[[Translator], Reply]) -> None:
    author = ctx.session.get(Person, art.author_id)
    if author is not None and (ctx.person is None or author.id != ctx.person.id):
        ctx.send_to(author, make)


def revise_button(tr: Translator, art: Article) -> tuple[tuple[Button, ...], ...]:
    assert art.id is not None
    return keyboard(Button(tr.t("✏️ Revise and resend"), payload(art.id, "rev")))


def full_view(ctx: Ctx, art: Article) -> list[Reply]:
    """The whole text, the photos and the history of versions."""
    tr = ctx.tr
    lines = [tr.t("📰 <b>Article #{id}</b> · version {v}", id=art.id, v=art.version),
             tr.t("<b>{title}</b>", title=art.title), *details(ctx, tr, art),
             tr.t("Status: {status}", status=status_title(tr, art.status))]
    if art.published_url:
        lines.append(tr.t("Link: {url}", url=art.published_url))
    versions = ctx.session.exec(select(ArticleVersion).where(ArticleVersion.article_id == art.id)
                                .order_by(col(ArticleVersion.n))).all()
    if versions:
        lines += ["", tr.t("<b>Versions</b>")]
        kinds = {"submitted": N_("sent by the author"), "resubmitted": N_("revised and resent by the author"),
                 "edited": N_("edited by the secretary")}
        for v in versions:
            lines.append(tr.t("{n}. {what}: {name}, {time}", n=v.n, what=tr.t(kinds.get(v.kind, v.kind)),
                              name=_name(ctx, v.editor_id), time=tr.datetime(v.created_at)))
    replies = [Reply("\n".join(lines)), Reply(escape(art.body.strip()) or tr.t("(no text yet)"))]
    for i, ph in enumerate((art.photos or [])[:MAX_PHOTOS_SHOWN], start=1):
        path = str(ph.get("path", "")) if isinstance(ph, dict) else ""
        if path:
            replies.append(Reply(tr.t("Photo {n}/{total}", n=i, total=len(art.photos)),
                                 file=OutFile(kind="photo", path=path, mime=str(ph.get("mime", "image/jpeg")))))
    return replies


def may_read(ctx: Ctx, art: Article) -> bool:
    p = ctx.person
    assert p is not None
    if art.school_id != p.school_id:
        return False
    if art.author_id == p.id or p.has_role(*READER_ROLES):
        return art.status != ArticleStatus.DRAFT or art.author_id == p.id
    return False


# -- submission (called by the author's flow) --------------------------------------------------------
def submit(ctx: Ctx, art: Article) -> Reply | None:
    """Send (or resend) the article to the secretary as a new version. None when it changed meanwhile."""
    person = ctx.person
    assert person is not None and art.id is not None
    was = art.status
    if was not in EDITABLE:
        return None
    res = ctx.session.execute(
        update(Article).where(col(Article.id) == art.id, col(Article.status) == was,
                              col(Article.version) == art.version)
        .values(status=ArticleStatus.SUBMITTED, version=Article.version + 1, submitted_at=ctx.now,
                updated_at=ctx.now, note="" if was == ArticleStatus.DRAFT else Article.note)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return None
    ctx.session.refresh(art)
    kind = "submitted" if was == ArticleStatus.DRAFT else "resubmitted"
    ctx.session.add(ArticleVersion(article_id=art.id, school_id=art.school_id, n=art.version, kind=kind,
                                   editor_id=person.id, title=art.title, body=art.body,
                                   photos=list(art.photos or []), source=art.source, created_at=ctx.now))
    ctx.session.flush()
    ctx.audit(f"article.{kind}", f"article:{art.id}", version=art.version, category=art.category,
              unit=art.unit, origin=art.origin, event=art.event_date.isoformat() if art.event_date else None,
              photos=len(art.photos or []), chars=len(art.body))
    lead = N_("📥 New article #{id} to edit and forward.") if kind == "submitted" else \
        N_("📥 Article #{id} was revised and resent by its author.")
    if kind == "resubmitted":
        refresh_cards(ctx, art)
    sent = send_cards(ctx, art, lead)
    text = ctx.t("📨 Article #{id} «{title}» was sent to the editorial board's secretary. You will be told at "
                 "every step.", id=art.id, title=art.title)
    if art.deadline is not None:
        text += "\n" + ctx.t("It should be published by {deadline} (3 days after the event, Article 22).",
                             deadline=ctx.tr.date(art.deadline))
    if sent == 0:
        text += "\n" + ctx.t("Nobody on the editorial board has linked the assistant yet; please tell the "
                             "secretary.")
    return Reply(text)


# -- the secretary's and author's buttons -------------------------------------------------------------
def on_action(ctx: Ctx) -> Step:
    """``ar:<id>:<action>`` — looked up and authorised on the server; stale cards change nothing."""
    person = ctx.person
    assert person is not None
    parsed = parse_payload(ctx.inbound.payload)
    if parsed is None:
        ctx.audit("article.refused", "", reason="malformed", payload=(ctx.inbound.payload or "")[:64])
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    aid, action = parsed
    art = ctx.session.get(Article, aid)
    if art is None or art.school_id != person.school_id:
        ctx.audit("article.refused", f"article:{aid}", reason="unknown", action=action)
        return Step.stay(Reply(ctx.t("You cannot do this for that article.")))
    if action == "full":
        if not may_read(ctx, art):
            ctx.audit("article.refused", f"article:{aid}", reason="role", action=action)
            return Step.stay(Reply(ctx.t("You cannot do this for that article.")))
        return Step.stay(*full_view(ctx, art))
    if action == "rev":
        if art.author_id != person.id:
            ctx.audit("article.refused", f"article:{aid}", reason="not_author", action=action)
            return Step.stay(Reply(ctx.t("You cannot do this for that article.")))
        if art.status not in EDITABLE:
            return Step.stay(Reply(ctx.t("Article #{id} is {status} and cannot be changed now.", id=aid,
                                         status=status_title(ctx.tr, art.status))))
        return Step.start_flow("articles", seed={"article_id": aid})
    if not is_secretary(ctx.session, person):
        ctx.audit("article.refused", f"article:{aid}", reason="role", action=action)
        return Step.stay(Reply(ctx.t("Only the editorial board's secretary can do this.")))
    if action == "pub":
        if art.status != ArticleStatus.APPROVED:
            return Step.stay(_stale(ctx, art))
        return Step.start_flow("article_publish", seed={"article_id": aid})
    if art.status != ArticleStatus.SUBMITTED:
        return Step.stay(_stale(ctx, art))
    if action in ("fwd", "head"):
        return Step.stay(*forward(ctx, art, in_plan=action == "fwd"))
    if action == "ret":
        return Step.start_flow("article_return", seed={"article_id": aid})
    return Step.start_flow("article_edit", seed={"article_id": aid, "version": art.version})


def _stale(ctx: Ctx, art: Article) -> Reply:
    return Reply(ctx.t("Article #{id} is already {status}; nothing was changed.", id=art.id,
                       status=status_title(ctx.tr, art.status)))


def _who(ctx: Ctx, tr: Translator, spec: approvals.StageSpec) -> str:
    if spec.person_id is not None:
        return _name(ctx, spec.person_id)
    try:
        return tr.t(ROLE_TITLES[Role(spec.role or "")])
    except (ValueError, KeyError):
        return spec.role or "?"


def forward(ctx: Ctx, art: Article, *, in_plan: bool) -> list[Reply]:
    """Chuyển duyệt: one approval (the approval engine) to the approver the school chose."""
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None and art.id is not None
    res = ctx.session.execute(
        update(Article).where(col(Article.id) == art.id, col(Article.status) == ArticleStatus.SUBMITTED)
        .values(status=ArticleStatus.IN_REVIEW, forwarded_by=person.id, in_plan=in_plan, updated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()
        fresh = ctx.session.get(Article, art.id)
        return [_stale(ctx, fresh or art)]
    ctx.session.refresh(art)
    spec = approver_stage(ctx.session, school, art, in_plan=in_plan)
    tr = ctx.tr
    author = ctx.session.get(Person, art.author_id)
    fields = [(N_("Article"), f"#{art.id} · {art.title}"),
              (N_("Category"), category_title(tr, art.category)),
              (N_("Author"), (author.full_name + (f" ({author.unit})" if author and author.unit else ""))
               if author else "?"),
              (N_("On behalf of"), art.unit or tr.t("Personal")),
              (N_("Source"), tr.t("Collected from: {source}", source=art.source) if art.origin == ORIGIN_COLLECTED
               else tr.t("Own text")),
              (N_("Event date"), tr.t("{event} · publish by {deadline}", event=tr.date(art.event_date),
                                      deadline=tr.date(art.deadline))
               if art.event_date and art.deadline else tr.t("Not tied to an event")),
              (N_("Photos"), str(len(art.photos or []))),
              (N_("Text"), short(art.body, 400)),
              (N_("Full text"), f"/xembai {art.id}")]
    if not in_plan:
        fields.insert(1, (N_("Outside the activity plan"), tr.t("Yes: the board head decides (Article 15.2).")))
    ap = approvals.request(ctx, kind="article", subject=f"article:{art.id}", title=N_("Article for the school portal"),
                           fields=fields, stages=[spec])
    art.approval_id = ap.id
    ctx.session.add(art)
    ctx.session.flush()
    ctx.audit("article.forwarded", f"article:{art.id}", approval=ap.id, in_plan=in_plan,
              approver=spec.role or f"person:{spec.person_id}", version=art.version)
    refresh_cards(ctx, art)
    tell_author(ctx, art, lambda t: Reply(t.t(
        "📤 Your article «{title}» was checked by the secretary and sent for approval to {who}.",
        title=art.title, who=_who(ctx, t, spec))))
    return [Reply(ctx.t("📤 Article #{id} was sent for approval to {who}.", id=art.id, who=_who(ctx, tr, spec)))]


def on_decided(ctx: Ctx, approval: Approval, outcome: str) -> None:
    """Approval hook: approved → the secretary gets 🌐 Đăng bài; rejected → back to the author."""
    art = ctx.session.exec(select(Article).where(Article.approval_id == approval.id)).first()
    if art is None or art.id is None:
        return
    decider = ctx.person
    name = decider.full_name if decider else "?"
    if outcome == ApprovalStatus.APPROVED:
        res = ctx.session.execute(
            update(Article).where(col(Article.id) == art.id, col(Article.status) == ArticleStatus.IN_REVIEW)
            .values(status=ArticleStatus.APPROVED, approved_by=decider.id if decider else None,
                    approved_at=ctx.now, updated_at=ctx.now).execution_options(synchronize_session=False))
        if res.rowcount != 1:  # type: ignore[attr-defined]
            return
        ctx.session.refresh(art)
        ctx.audit("article.approved", f"article:{art.id}", approval=approval.id)
        refresh_cards(ctx, art)
        send_cards(ctx, art, N_("✅ Article #{id} was approved. Publish it on the portal, then tap “Publish” "
                                "and send its link."))
        tell_author(ctx, art, lambda t: Reply(t.t(
            "✅ Your article «{title}» was approved by {name}. The secretary will publish it on the portal.",
            title=art.title, name=name)))
        return
    stage = approvals.current_stage(ctx.session, approval)
    reason = stage.note if stage is not None else ""
    res = ctx.session.execute(
        update(Article).where(col(Article.id) == art.id, col(Article.status) == ArticleStatus.IN_REVIEW)
        .values(status=ArticleStatus.REJECTED, note=reason, returned_by=decider.id if decider else None,
                updated_at=ctx.now).execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return
    ctx.session.refresh(art)
    ctx.audit("article.rejected", f"article:{art.id}", approval=approval.id, reason=reason)
    refresh_cards(ctx, art)

    def tell(t: Translator) -> Reply:
        text = t.t("❌ Your article «{title}» was not approved for publication by {name}.", title=art.title,
                   name=name)
        if reason:
            text += "\n" + t.t("Reason / note: {note}", note=reason)
        text += "\n" + t.t("You can revise it and send it again.")
        return Reply(text, buttons=revise_button(t, art))
    tell_author(ctx, art, tell)


# -- Trả lại (with a note) ------------------------------------------------------------------------
def _load_for_secretary(ctx: Ctx, status: str) -> Article | None:
    art = ctx.session.get(Article, int(ctx.data.get("article_id", 0)))
    person = ctx.person
    assert person is not None
    if art is None or art.school_id != person.school_id or not is_secretary(ctx.session, person):
        return None
    return art if art.status == status else None


def _return_start(ctx: Ctx) -> Step:
    """Ask the secretary what the author should change."""
    return Step.goto("note", Reply(
        ctx.t("What should the author change in article #{id}? Send your note.", id=ctx.data.get("article_id")),
        buttons=keyboard(choice(ctx.t("↩️ Do not return it"), "back"))))


def _return_note(ctx: Ctx, msg: Inbound) -> Step:
    """Return to the author with the note (required); the author can revise and resend."""
    aid = int(ctx.data.get("article_id", 0))
    if choice_value(msg) == "back":
        return Step.done(Reply(ctx.t("Article #{id} was not returned; it is still waiting for you.", id=aid)))
    note = clean(msg.text or "")
    if not note:
        return Step.stay(Reply(ctx.t("Please write the note for the author as text (it cannot be empty).")))
    if len(note) > MAX_NOTE:
        return Step.stay(Reply(ctx.t("The note is too long (at most {max} characters).", max=MAX_NOTE)))
    art = _load_for_secretary(ctx, ArticleStatus.SUBMITTED)
    person = ctx.person
    assert person is not None
    if art is None:
        fresh = ctx.session.get(Article, aid)
        return Step.done(_stale(ctx, fresh) if fresh and fresh.school_id == person.school_id
                         else Reply(ctx.t("You cannot do this for that article.")))
    res = ctx.session.execute(
        update(Article).where(col(Article.id) == aid, col(Article.status) == ArticleStatus.SUBMITTED)
        .values(status=ArticleStatus.RETURNED, note=note, returned_by=person.id, updated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()
        return Step.done(_stale(ctx, ctx.session.get(Article, aid) or art))
    ctx.session.refresh(art)
    ctx.audit("article.returned", f"article:{aid}", note=note, version=art.version)
    refresh_cards(ctx, art)
    tell_author(ctx, art, lambda t: Reply(
        t.t("↩️ The secretary {name} returned your article «{title}» for revision.", name=person.full_name,
            title=art.title) + "\n" + t.t("Note: {note}", note=note),
        buttons=revise_button(t, art)))
    return Step.done(Reply(ctx.t("↩️ Article #{id} was returned to its author with your note.", id=aid)))


# -- a corrected text from the secretary (new version) ------------------------------------------------
def _edit_start(ctx: Ctx) -> Step:
    """Ask for the corrected text, over several messages."""
    ctx.data["parts"] = []
    return Step.goto("body", Reply(
        ctx.t("Send the corrected text of article #{id}. You can send it in several messages; type Xong when "
              "it is complete. The author's version is kept.", id=ctx.data.get("article_id")),
        buttons=keyboard(choice(ctx.t("✅ Xong"), "done"), choice(ctx.t("Cancel"), "cancel"), per_row=2)))


def _edit_body(ctx: Ctx, msg: Inbound) -> Step:
    """Collect parts until ``Xong``; then ask about the title."""
    parts: list[str] = list(ctx.data.get("parts") or [])  # a new list: the conversation row must see the change
    value = choice_value(msg)
    if value == "cancel":
        return Step.done(Reply(ctx.t("Nothing was changed.")))
    if value == "done" or (msg.text and is_done_word(msg.text)):
        if not parts:
            return Step.stay(Reply(ctx.t("The corrected text is still empty. Send it, or tap Cancel.")))
        art = ctx.session.get(Article, int(ctx.data.get("article_id", 0)))
        title = art.title if art else ""
        return Step.goto("title", Reply(ctx.t("Keep the title «{title}»? Tap Keep, or type the new title.",
                                              title=title),
                                        buttons=keyboard(choice(ctx.t("Keep"), "keep"))))
    text = nfc(msg.text or "").strip()
    if not text:
        return Step.stay(Reply(ctx.t("Please send the text as a message, or type Xong when it is complete.")))
    if sum(len(p) for p in parts) + len(text) > MAX_BODY:
        return Step.stay(Reply(ctx.t("The text is too long (at most {max} characters).", max=MAX_BODY)))
    parts.append(text)
    ctx.data["parts"] = parts
    return Step.stay(Reply(ctx.t("Received ({n} characters so far). Send more, or type Xong when the text is "
                                 "complete.", n=ctx.tr.number(sum(len(p) for p in parts))),
                           buttons=keyboard(choice(ctx.t("✅ Xong"), "done"))))


def _edit_title(ctx: Ctx, msg: Inbound) -> Step:
    """Keep or replace the title, then save the new version (only if nobody acted meanwhile)."""
    aid = int(ctx.data.get("article_id", 0))
    art = _load_for_secretary(ctx, ArticleStatus.SUBMITTED)
    person = ctx.person
    assert person is not None
    if art is None:
        fresh = ctx.session.get(Article, aid)
        return Step.done(_stale(ctx, fresh) if fresh and fresh.school_id == person.school_id
                         else Reply(ctx.t("You cannot do this for that article.")))
    new_title = art.title
    if choice_value(msg) != "keep":
        new_title = clean(msg.text or "")
        if not new_title:
            return Step.stay(Reply(ctx.t("The title cannot be empty. Type the new title, or tap Keep."),
                                   buttons=keyboard(choice(ctx.t("Keep"), "keep"))))
        if len(new_title) > MAX_TITLE:
            return Step.stay(Reply(ctx.t("The title is too long (at most {max} characters).", max=MAX_TITLE)))
    body = "\n\n".join(ctx.data.get("parts", []))
    old_title = art.title
    expected = int(ctx.data.get("version", art.version))
    res = ctx.session.execute(
        update(Article).where(col(Article.id) == aid, col(Article.status) == ArticleStatus.SUBMITTED,
                              col(Article.version) == expected)
        .values(version=Article.version + 1, title=new_title, body=body, updated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return Step.done(Reply(ctx.t("Article #{id} changed while you were editing it (someone else edited or "
                                     "forwarded it). Nothing was saved; open its card again.", id=aid)))
    ctx.session.refresh(art)
    ctx.session.add(ArticleVersion(article_id=aid, school_id=art.school_id, n=art.version, kind="edited",
                                   editor_id=person.id, title=art.title, body=art.body,
                                   photos=list(art.photos or []), source=art.source, created_at=ctx.now))
    ctx.session.flush()
    ctx.audit("article.edited", f"article:{aid}", version=art.version, chars=len(body),
              title_changed=new_title != old_title)
    refresh_cards(ctx, art)
    send_cards(ctx, art, N_("✏️ Your corrected text is saved as a new version of article #{id}."), only=person)
    tell_author(ctx, art, lambda t: Reply(t.t(
        "✏️ The secretary {name} edited your article «{title}» (version {v}). You will be told when it is "
        "approved.", name=person.full_name, title=art.title, v=art.version)))
    return Step.done()


# -- Đăng bài: the published link -------------------------------------------------------------------
def _publish_start(ctx: Ctx) -> Step:
    """Ask for the link of the published article."""
    art = ctx.session.get(Article, int(ctx.data.get("article_id", 0)))
    return Step.goto("url", Reply(
        ctx.t("Send the link of article #{id} «{title}» on the school portal (for example "
              "https://thuongthanh.edu.vn/tin-tuc/…).", id=ctx.data.get("article_id"), title=art.title if art else ""),
        buttons=keyboard(choice(ctx.t("Cancel"), "cancel"))))


URL_ERRORS = {
    "empty": N_("Please send the link of the published article as text."),
    "invalid": N_("That is not a valid web address. Please send the full link of the published article, "
                  "for example https://thuongthanh.edu.vn/tin-tuc/khai-giang.html"),
    "home": N_("That is only the portal's home page. Please send the link of the article itself."),
}


def _publish_url(ctx: Ctx, msg: Inbound) -> Step:
    """Validate the link; record the publication (late when after the deadline) and tell the author."""
    aid = int(ctx.data.get("article_id", 0))
    if choice_value(msg) == "cancel":
        return Step.done(Reply(ctx.t("Nothing was changed.")))
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None
    domains = settings_of(school).get("portal_domains") or []
    domains = [str(d) for d in domains] if isinstance(domains, list) else []
    url, error = check_url(msg.text, domains)
    if url is None:
        if error == "domain":
            return Step.stay(Reply(ctx.t("The link must be on the school portal ({domains}). Please check it.",
                                         domains=", ".join(domains))))
        return Step.stay(Reply(ctx.t(URL_ERRORS.get(error, URL_ERRORS["invalid"]))))
    art = _load_for_secretary(ctx, ArticleStatus.APPROVED)
    if art is None:
        fresh = ctx.session.get(Article, aid)
        return Step.done(_stale(ctx, fresh) if fresh and fresh.school_id == person.school_id
                         else Reply(ctx.t("You cannot do this for that article.")))
    other = ctx.session.exec(select(Article).where(Article.school_id == school.id, Article.published_url == url,
                                                   Article.id != aid)).first()
    if other is not None:
        return Step.stay(Reply(ctx.t("That link is already recorded for article #{id} «{title}». Please check "
                                     "it and send the right link.", id=other.id, title=other.title)))
    art.published_at = ctx.now
    late = is_late(art, ctx.tr.tz)
    res = ctx.session.execute(
        update(Article).where(col(Article.id) == aid, col(Article.status) == ArticleStatus.APPROVED)
        .values(status=ArticleStatus.PUBLISHED, published_url=url, published_at=ctx.now,
                published_by=person.id, late=late, updated_at=ctx.now)
        .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        ctx.session.expire_all()
        return Step.done(_stale(ctx, ctx.session.get(Article, aid) or art))
    ctx.session.refresh(art)
    ctx.audit("article.published", f"article:{aid}", url=url, late=late,
              deadline=art.deadline.isoformat() if art.deadline else None)
    refresh_cards(ctx, art)
    deadline = art.deadline

    def tell(t: Translator) -> Reply:
        text = t.t("🎉 Your article «{title}» is published on the school portal: {url}", title=art.title, url=url)
        if late and deadline is not None:
            text += "\n" + t.t("It was published after the deadline of {deadline}; it is marked late.",
                               deadline=t.date(deadline))
        return Reply(text)
    tell_author(ctx, art, tell)
    reply = ctx.t("🌐 Article #{id} is recorded as published: {url}", id=aid, url=url)
    if late and deadline is not None:
        reply += "\n" + ctx.t("⚠️ Published after the deadline of {deadline}: it is marked late.",
                              deadline=ctx.tr.date(deadline))
    return Step.done(Reply(reply))


# -- /bientap: the secretary's queue ------------------------------------------------------------------
QUEUE_LIMIT = 10


def queue(ctx: Ctx) -> Step:
    """``/bientap``: articles waiting for the secretary (to edit and forward, then to publish), oldest
    first, each as its card with the buttons."""
    person = ctx.person
    assert person is not None
    if not is_secretary(ctx.session, person):
        return Step.stay(Reply(ctx.t("Only the editorial board's secretary can do this.")))
    rows = list(ctx.session.exec(select(Article).where(
        Article.school_id == person.school_id,
        col(Article.status).in_([ArticleStatus.SUBMITTED, ArticleStatus.APPROVED]))
        .order_by(col(Article.submitted_at), col(Article.id))))
    waiting = list(ctx.session.exec(select(Article).where(Article.school_id == person.school_id,
                                                          Article.status == ArticleStatus.IN_REVIEW)))
    if not rows:
        text = ctx.t("No article is waiting for you. 👍")
        if waiting:
            text += "\n" + ctx.tn("{n} article is waiting for the approver.", "{n} articles are waiting for the "
                                  "approver.", len(waiting))
        return Step.stay(Reply(text))
    replies = [Reply(ctx.tn("{n} article is waiting for you (oldest first):",
                            "{n} articles are waiting for you (oldest first):", len(rows)))]
    replies += [secretary_card(ctx, ctx.tr, a) for a in rows[:QUEUE_LIMIT]]
    if len(rows) > QUEUE_LIMIT:
        replies.append(Reply(ctx.t("…and {n} more. Handle these first, then type /bientap again.",
                                   n=len(rows) - QUEUE_LIMIT)))
    return Step.stay(*replies)


# -- /xembai <id> ---------------------------------------------------------------------------------
def show_article(ctx: Ctx) -> Step:
    """The full text, photos and versions of an article (its author, the secretary, the board, BGH)."""
    aid = parse_id((ctx.inbound.args or "").strip().lstrip("#"))
    if aid is None:
        return Step.stay(Reply(ctx.t("Type the article's number, for example /xembai 12.")))
    art = ctx.session.get(Article, aid)
    if art is None or not may_read(ctx, art):
        return Step.stay(Reply(ctx.t("You cannot do this for that article.")))
    return Step.stay(*full_view(ctx, art))


# -- deadline reminders (Điều 22.1.1) ---------------------------------------------------------------
def deadline_rule(run: RuleRun) -> None:
    """Before the deadline (``days_before``, default 1) and once it has passed: the author, and the
    secretaries for articles already with them. Each notice once (``article:<id>:due|late``)."""
    today = run.today()
    before = max(0, int(run.param("days_before", 1)))
    from datetime import timedelta

    rows = run.session.exec(select(Article).where(
        Article.school_id == run.school.id, col(Article.deadline).is_not(None),
        col(Article.status).in_([ArticleStatus.DRAFT, ArticleStatus.RETURNED, *PIPELINE]),  # not refused ones
        col(Article.deadline) >= today - timedelta(days=7),
        col(Article.deadline) <= today + timedelta(days=before))).all()
    if not rows:
        return
    secs = secretaries(run.session, run.school.id or 0)
    for art in rows:
        deadline = art.deadline
        assert deadline is not None
        overdue = deadline < today
        key = f"article:{art.id}:{'late' if overdue else 'due'}"
        author = run.session.get(Person, art.author_id)
        if author is not None:
            run.notify(author, _author_notice(art, deadline, overdue), key=key)
        if art.status in PIPELINE:
            for p in secs:
                if author is None or p.id != author.id:
                    run.notify(p, _secretary_notice(art, deadline, overdue), key=key)


def _author_notice(art: Article, deadline: date, overdue: bool) -> Callable[[Translator], Reply]:
    def make(tr: Translator) -> Reply:
        if art.status in EDITABLE:
            text = (tr.t("⚠️ The deadline for «{title}» ({deadline}, 3 days after the event) has passed and it "
                         "has not been sent yet. Please finish it with /baiviet.", title=art.title,
                         deadline=tr.date(deadline)) if overdue else
                    tr.t("⏰ «{title}» should be published by {deadline} (3 days after the event) but has not been "
                         "sent yet. Please finish it with /baiviet.", title=art.title, deadline=tr.date(deadline)))
        else:
            text = (tr.t("⚠️ The deadline for your article «{title}» ({deadline}) has passed; it is {status}.",
                         title=art.title, deadline=tr.date(deadline), status=status_title(tr, art.status))
                    if overdue else
                    tr.t("⏰ Your article «{title}» should be published by {deadline}; it is {status}.",
                         title=art.title, deadline=tr.date(deadline), status=status_title(tr, art.status)))
        return Reply(text)
    return make


def _secretary_notice(art: Article, deadline: date, overdue: bool) -> Callable[[Translator], Reply]:
    def make(tr: Translator) -> Reply:
        if overdue:
            text = tr.t("⚠️ Article #{id} «{title}» is past its deadline of {deadline} and is {status}. It will be "
                        "marked late when published.", id=art.id, title=art.title, deadline=tr.date(deadline),
                        status=status_title(tr, art.status))
        else:
            text = tr.t("⏰ Article #{id} «{title}» must be published by {deadline} (3 days after the event); it is "
                        "{status}.", id=art.id, title=art.title, deadline=tr.date(deadline),
                        status=status_title(tr, art.status))
        assert art.id is not None
        return Reply(text, buttons=keyboard(Button(tr.t("📎 Full text and photos"), payload(art.id, "full"))))
    return make


RULES = [
    Rule("articles.deadline", title=N_("Article due 3 days after its event"), schedule=Continuous(),
         fn=deadline_rule, roles=(Role.SECRETARY,), regulation="001 Điều 22.1.1", order=40),
]

RETURN_FLOW = Flow(name="article_return", title=N_("Return an article"), start=_return_start,
                   states={"note": _return_note}, in_menu=False)
EDIT_FLOW = Flow(name="article_edit", title=N_("Edit an article"), start=_edit_start,
                 states={"body": _edit_body, "title": _edit_title}, in_menu=False)
PUBLISH_FLOW = Flow(name="article_publish", title=N_("Publish an article"), start=_publish_start,
                    states={"url": _publish_url}, in_menu=False)

__all__ = ["EDIT_FLOW", "PUBLISH_FLOW", "RETURN_FLOW", "RULES", "card_text", "details", "forward", "full_view",
           "is_done_word", "on_action", "on_decided", "parse_payload", "payload", "queue", "refresh_cards",
           "send_cards",
           "show_article", "submit"]

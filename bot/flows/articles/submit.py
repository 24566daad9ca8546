"""``/baiviet`` — submit news or an article for the school portal (seed 001 Điều 14–22).

Title → category (the six kinds of Điều 15.1) → on behalf of an organisation / unit, or personal
(Điều 18) → own text, or collected from the press / internet with its source (Điều 15.2) → event
date (publication is due 3 days after it, Điều 22.1.1) → the text, over several messages until
``Xong`` → photos (several; each checked to be a picture) → summary → send to the secretary.

The draft is an :class:`~bot.flows.articles.models.Article` row from the first answer on, so it
survives restarts, ``/huy`` and an expired conversation: ``/baiviet`` offers to continue it. A
returned (or not approved) article opens on its summary, to revise and resend as a new version.
The rest of the pipeline is in ``articles_review`` (secretary, approval, publication, deadlines),
``articles_stats`` (``/thongke``, monthly nudge and report) and ``articles_vote`` (best article).

```mermaid
stateDiagram-v2
    [*] --> pick: unfinished drafts or returned articles
    [*] --> title: none
    pick --> title: new
    pick --> confirm: continue (first missing step otherwise)
    title --> category
    category --> unit
    unit --> origin
    origin --> source: collected
    origin --> event: own text
    source --> event
    event --> body
    body --> body: more text
    body --> photos: Xong
    photos --> photos: another photo
    photos --> confirm: Xong / Bỏ qua
    confirm --> title: edit title
    confirm --> body: rewrite or add text
    confirm --> photos: add photos
    confirm --> category: other details
    confirm --> [*]: send (or save for later, or discard)
```
"""

from __future__ import annotations

from datetime import date

from bot.core import Ctx, Flow, Handler, Inbound, Reply, Step, choice, choice_value, keyboard
from bot.flows.articles import review, stats, vote
from bot.flows.articles.models import Article, ArticleStatus
from bot.flows.articles.service import (
    CATEGORIES,
    DEADLINE_DAYS,
    EDITABLE,
    MAX_BODY,
    MAX_PHOTOS,
    MAX_SOURCE,
    MAX_TITLE,
    ORIGIN_COLLECTED,
    ORIGIN_OWN,
    check_photo,
    deadline_for,
    parse_category,
    short,
    status_title,
    unfinished_of,
    units_of,
)
from bot.i18n import N_
from bot.roles import Role
from bot.steps import FUTURE, TOO_OLD, UNREADABLE, DayQuestion
from bot.text import clean, fold, nfc, parse_id

STEPS = ("title", "category", "unit", "origin", "event", "body", "photos")
MAX_PAST_DAYS = 366
MAX_FUTURE_DAYS = 180
#: the event's day: at most a year back, at most half a year ahead (or “not about an event”)
EVENT_DAY = DayQuestion(errors={
    UNREADABLE: N_("I could not read that date. Type it like 21/11 or 21/11/2026, or tap “Not about an event”."),
    FUTURE: N_("That date is too far in the future. Please check it."),
    TOO_OLD: N_("That date is more than a year ago. Please check it."),
}, past_days=MAX_PAST_DAYS, future_days=MAX_FUTURE_DAYS)


# -- helpers --------------------------------------------------------------------------------------
def _article(ctx: Ctx) -> Article | None:
    """The draft this conversation works on, if it still belongs to the person and may change."""
    aid = ctx.data.get("article_id")
    art_id = parse_id(str(aid)) if isinstance(aid, int | str) else None
    art = ctx.session.get(Article, art_id) if art_id is not None else None
    if art is None or ctx.person is None or art.author_id != ctx.person.id or art.status not in EDITABLE:
        return None
    return art


def _gone(ctx: Ctx) -> Step:
    return Step.done(Reply(ctx.t("This article can no longer be changed here (it may have been sent already). "
                                 "Type /baiviet to see your articles.")))


def _touch(ctx: Ctx, art: Article, *done: str) -> None:
    progress = [s for s in (art.progress or []) if s in STEPS]
    for s in done:
        if s not in progress:
            progress.append(s)
    art.progress = progress
    art.updated_at = ctx.now
    ctx.session.add(art)
    ctx.session.flush()


def _forget(ctx: Ctx, art: Article, *steps: str) -> None:
    art.progress = [s for s in (art.progress or []) if s not in steps]
    art.updated_at = ctx.now
    ctx.session.add(art)
    ctx.session.flush()


def _next(ctx: Ctx, art: Article) -> Step:
    """Ask for the first missing piece, or show the summary when nothing is missing."""
    done = set(art.progress or [])
    for s in STEPS:
        if s not in done:
            return _ASK[s](ctx, art)
    return Step.goto("confirm", _summary(ctx, art))


# -- prompts --------------------------------------------------------------------------------------
def _ask_title(ctx: Ctx, art: Article | None) -> Step:
    return Step.goto("title", Reply(ctx.t("What is the title of the article?")))


def _ask_category(ctx: Ctx, art: Article | None) -> Step:
    return Step.goto("category", Reply(ctx.t("Which kind of article is it?"), buttons=keyboard(
        *[choice(ctx.t(label), f"cat:{key}") for key, label in CATEGORIES.items()], per_row=1)))


def _ask_unit(ctx: Ctx, art: Article | None) -> Step:
    person, school = ctx.person, ctx.school
    assert person is not None and school is not None
    units = units_of(ctx.session, school)
    mine = [u for u in units if fold(u) == fold(person.unit)]
    units = mine + [u for u in units if u not in mine]
    ctx.data["units"] = units[:24]
    buttons = [choice(ctx.t("👤 Personal"), "u-")] + [choice(u, f"u{i}") for i, u in enumerate(units[:24])]
    return Step.goto("unit", Reply(
        ctx.t("Is it your personal article, or written on behalf of an organisation or unit? An article on "
              "behalf of a unit counts toward that unit's monthly article (Article 18)."),
        buttons=keyboard(*buttons, per_row=2)))


def _ask_origin(ctx: Ctx, art: Article | None) -> Step:
    return Step.goto("origin", Reply(ctx.t("Is it your own text, or collected from the press or the internet?"),
                                     buttons=keyboard(choice(ctx.t("✍️ My own text"), ORIGIN_OWN),
                                                      choice(ctx.t("📰 Collected (press, internet)"),
                                                             ORIGIN_COLLECTED), per_row=1)))


def _ask_event(ctx: Ctx, art: Article | None) -> Step:
    return EVENT_DAY.ask(ctx, "event", ctx.t("On what date was (or will be) the event the article is about? For "
                                             "example 21/11. It must be published within {n} days after the "
                                             "event.", n=DEADLINE_DAYS),
                         choice(ctx.t("Not about an event"), "none"))


def _ask_body(ctx: Ctx, art: Article | None) -> Step:
    return Step.goto("body", Reply(
        ctx.t("Now send the text of the article. You can send it in several messages; type Xong when it is "
              "complete."),
        buttons=keyboard(choice(ctx.t("✅ Xong"), "done"))))


def _ask_photos(ctx: Ctx, art: Article | None) -> Step:
    n = len(art.photos or []) if art else 0
    text = ctx.t("Send the photos of the article (several are welcome, up to {max}). Tap Xong when finished, "
                 "or Skip if there are none.", max=MAX_PHOTOS)
    if n:
        text += "\n" + ctx.tn("{n} photo is already attached.", "{n} photos are already attached.", n)
    return Step.goto("photos", Reply(text, buttons=keyboard(choice(ctx.t("✅ Xong"), "done"),
                                                            choice(ctx.t("Skip"), "skip"), per_row=2)))


_ASK = {"title": _ask_title, "category": _ask_category, "unit": _ask_unit, "origin": _ask_origin,
        "event": _ask_event, "body": _ask_body, "photos": _ask_photos}


def _summary(ctx: Ctx, art: Article, note: str | None = None) -> Reply:
    tr = ctx.tr
    lines = []
    if note:
        lines += [note, ""]
    resend = art.status in (ArticleStatus.RETURNED, ArticleStatus.REJECTED)
    if resend:
        lines.append(ctx.t("Article #{id} is {status}.", id=art.id, status=status_title(tr, art.status)))
        if art.note:
            lines.append(ctx.t("Note: {note}", note=art.note))
        lines.append("")
    lines.append(ctx.t("<b>{title}</b>", title=art.title))
    lines += review.details(ctx, tr, art)
    lines.append(ctx.t("Text: {n} characters", n=tr.number(len(art.body))))
    lines += ["", review.preview(tr, art.body, 500)]
    if art.category == "conference" and art.event_date is not None:
        ahead = (art.event_date - ctx.today()).days
        if 0 <= ahead < 3:
            lines += ["", ctx.t("⚠️ Conferences should be announced at least 3 days before they open "
                                "(Article 22.1.1).")]
    lines += ["", ctx.t("Send it to the editorial board's secretary?") if not resend
              else ctx.t("Resend it as a new version?")]
    buttons = [choice(ctx.t("📨 Send") if not resend else ctx.t("📨 Resend"), "send"),
               choice(ctx.t("✏️ Title"), "e:title"), choice(ctx.t("📝 Rewrite the text"), "e:body"),
               choice(ctx.t("➕ Add to the text"), "e:more"), choice(ctx.t("🖼 Add photos"), "e:photos")]
    if art.photos:
        buttons.append(choice(ctx.t("🗑 Remove the photos"), "e:nophotos"))
    buttons += [choice(ctx.t("⚙️ Kind, unit, source, date"), "e:details"),
                choice(ctx.t("💾 Finish later"), "later")]
    if art.status == ArticleStatus.DRAFT:
        buttons.append(choice(ctx.t("🗑 Discard the draft"), "discard"))
    return Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=2))


# -- steps ----------------------------------------------------------------------------------------
def start(ctx: Ctx) -> Step:
    """Continue a given article (from a “revise” button), offer unfinished ones, or start a new one."""
    if ctx.data.get("article_id"):
        art = _article(ctx)
        if art is None:
            return _gone(ctx)
        return _resume(ctx, art)
    assert ctx.person is not None
    open_ = unfinished_of(ctx.session, ctx.person)
    if not open_:
        return _ask_title(ctx, None)
    lines = [ctx.t("You have unfinished articles. Continue one, or start a new one?")]
    buttons = []
    for a in open_:
        label = short(a.title, 34) or ctx.t("(untitled)")
        lines.append(ctx.t("• #{id} «{title}» — {status}, {time}", id=a.id, title=label,
                           status=status_title(ctx.tr, a.status), time=ctx.tr.datetime(a.updated_at)))
        buttons.append(choice(f"✏️ #{a.id} {label}", f"r{a.id}"))
    buttons.append(choice(ctx.t("➕ New article"), "new"))
    return Step.goto("pick", Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=1)))


def _resume(ctx: Ctx, art: Article) -> Step:
    ctx.data["article_id"] = art.id
    if art.status != ArticleStatus.DRAFT:  # returned / not approved: everything is there
        _touch(ctx, art, *STEPS)
    return _next(ctx, art)


def pick(ctx: Ctx, msg: Inbound) -> Step:
    """Continue one of the unfinished articles (checked to be the person's own), or a new one."""
    value = choice_value(msg) or ""
    if value == "new":
        ctx.data.pop("article_id", None)
        return _ask_title(ctx, None)
    if value.startswith("r") and parse_id(value[1:]) is not None:
        ctx.data["article_id"] = parse_id(value[1:])
        art = _article(ctx)
        if art is None:
            ctx.data.pop("article_id", None)
            return Step.stay(Reply(ctx.t("That article can no longer be changed. Choose another one, or start a "
                                         "new one.")))
        return _resume(ctx, art)
    if msg.text and not msg.files:  # typed a title straight away: a new article
        ctx.data.pop("article_id", None)
        return title(ctx, msg)
    return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))


def title(ctx: Ctx, msg: Inbound) -> Step:
    """The title (not empty, at most 300 characters). Creates the draft on a new article."""
    text = clean(msg.text or "")
    if not text:
        return Step.stay(Reply(ctx.t("The title cannot be empty. Please type the title of the article.")))
    if len(text) > MAX_TITLE:
        return Step.stay(Reply(ctx.t("The title is too long (at most {max} characters).", max=MAX_TITLE)))
    art = _article(ctx)
    if art is None:
        if ctx.data.get("article_id"):
            return _gone(ctx)
        person = ctx.person
        assert person is not None
        art = Article(school_id=person.school_id, author_id=person.id or 0, title=text, created_at=ctx.now,
                      updated_at=ctx.now)
        ctx.session.add(art)
        ctx.session.flush()
        ctx.data["article_id"] = art.id
        ctx.audit("article.draft", f"article:{art.id}")
    else:
        art.title = text
    _touch(ctx, art, "title")
    return _next(ctx, art)


def category(ctx: Ctx, msg: Inbound) -> Step:
    """One of the six kinds, from a button or typed (``tin ngắn``, ``phong su`` …)."""
    art = _article(ctx)
    if art is None:
        return _gone(ctx)
    value = choice_value(msg) or ""
    key = value[4:] if value.startswith("cat:") else parse_category(msg.text)
    if key not in CATEGORIES:
        return Step.stay(Reply(ctx.t("Please choose the kind of article from the buttons.")))
    art.category = key
    _touch(ctx, art, "category")
    return _next(ctx, art)


def unit(ctx: Ctx, msg: Inbound) -> Step:
    """Personal, or one of the organisations / units (button, or typed; diacritics forgiven)."""
    art = _article(ctx)
    if art is None:
        return _gone(ctx)
    units: list[str] = ctx.data.get("units") or []
    value = choice_value(msg) or ""
    chosen: str | None = None
    if value == "u-":
        chosen = ""
    elif value.startswith("u") and (i := parse_id(value[1:])) is not None and i < len(units):
        chosen = units[i]
    elif msg.text:
        q = fold(msg.text)
        if q in ("ca nhan", "personal", "rieng"):
            chosen = ""
        else:
            hits = [u for u in units if fold(u) == q] or [u for u in units if q and q in fold(u)]
            if len(hits) == 1:
                chosen = hits[0]
    if chosen is None:
        return Step.stay(Reply(ctx.t("Please choose from the buttons (or type the unit's name exactly).")))
    art.unit = chosen
    _touch(ctx, art, "unit")
    return _next(ctx, art)


def origin(ctx: Ctx, msg: Inbound) -> Step:
    """Own text, or collected (then the source is required, Điều 15.2)."""
    art = _article(ctx)
    if art is None:
        return _gone(ctx)
    value = choice_value(msg)
    typed = fold(msg.text or "")
    if value is None and typed:
        if any(w in typed for w in ("tu viet", "cua toi", "own")):
            value = ORIGIN_OWN
        elif any(w in typed for w in ("suu tam", "bao", "internet", "mang", "collected")):
            value = ORIGIN_COLLECTED
    if value not in (ORIGIN_OWN, ORIGIN_COLLECTED):
        return Step.stay(Reply(ctx.t("Please choose one of the buttons.")))
    art.origin = value
    if value == ORIGIN_COLLECTED:
        art.progress = [s for s in (art.progress or []) if s != "origin"]
        ctx.session.add(art)
        return Step.goto("source", Reply(ctx.t(
            "Where was it collected from? Give the source (newspaper, website, link). It is required for "
            "collected texts (Article 15.2).")))
    art.source = ""
    _touch(ctx, art, "origin")
    return _next(ctx, art)


def source(ctx: Ctx, msg: Inbound) -> Step:
    """The source of a collected text (required, at most 500 characters)."""
    art = _article(ctx)
    if art is None:
        return _gone(ctx)
    text = clean(msg.text or "")
    if not text:
        return Step.stay(Reply(ctx.t("The source is required for a collected text. Please type where it comes "
                                     "from (for example: Báo Giáo dục và Thời đại, https://…).")))
    if len(text) > MAX_SOURCE:
        return Step.stay(Reply(ctx.t("The source is too long (at most {max} characters).", max=MAX_SOURCE)))
    art.source = text
    _touch(ctx, art, "origin")
    return _next(ctx, art)


def event(ctx: Ctx, msg: Inbound) -> Step:
    """The event's date (``21/11``, ``hôm qua`` …) or none; sets the deadline (event + 3 days)."""
    art = _article(ctx)
    if art is None:
        return _gone(ctx)
    today = ctx.today()
    value = choice_value(msg)
    if fold(msg.text or "").strip(" .") in ("khong", "khong co", "khong gan", "khong gan voi su kien", "none"):
        value = "none"
    d: date | None = None
    if value != "none":
        answer = EVENT_DAY.answer(ctx, msg)
        if isinstance(answer, Reply):
            return Step.stay(answer)
        d = answer
    art.event_date = d
    art.deadline = deadline_for(d)
    _touch(ctx, art, "event")
    step = _next(ctx, art)
    if art.deadline is not None and art.deadline < today:
        step.replies.insert(0, Reply(ctx.t("⚠️ The deadline ({deadline}, {n} days after the event) has already "
                                           "passed; the article will be marked late when published.",
                                           deadline=ctx.tr.date(art.deadline), n=DEADLINE_DAYS)))
    return step


def _add_photos(ctx: Ctx, art: Article, msg: Inbound) -> list[Reply]:
    """Keep the pictures among the attachments; explain each one refused."""
    replies: list[Reply] = []
    photos = list(art.photos or [])
    added = 0
    for f in msg.files:
        err = check_photo(f)
        name = f.file_name or ctx.t("this file")
        if err == "too_big":
            replies.append(Reply(ctx.t("The picture “{name}” is too large to receive. Please send it as a photo "
                                       "(compressed) instead.", name=name)))
            continue
        if err == "failed":
            replies.append(Reply(ctx.t("I could not receive “{name}”. Please send it again.", name=name)))
            continue
        if err is not None:
            replies.append(Reply(ctx.t("“{name}” is not a picture. Please send photos only (JPG or PNG).",
                                       name=name)))
            continue
        if len(photos) >= MAX_PHOTOS:
            replies.append(Reply(ctx.t("An article can have at most {max} photos; the others were not added.",
                                       max=MAX_PHOTOS)))
            break
        if any(p.get("sha256") == f.sha256 for p in photos if isinstance(p, dict)):
            replies.append(Reply(ctx.t("That photo is already attached.")))
            continue
        photos.append({"path": f.path, "sha256": f.sha256, "mime": f.mime or "image/jpeg", "size": f.size})
        added += 1
    if added:
        art.photos = photos
        art.updated_at = ctx.now
        ctx.session.add(art)
        ctx.session.flush()
        replies.append(Reply(ctx.tn("🖼 Photo received ({n} in total). Send more, or tap Xong.",
                                    "🖼 Photos received ({n} in total). Send more, or tap Xong.", len(photos)),
                             buttons=keyboard(choice(ctx.t("✅ Xong"), "done"))))
    return replies


def body(ctx: Ctx, msg: Inbound) -> Step:
    """Collect the text over several messages until ``Xong`` (photos sent meanwhile are kept too)."""
    art = _article(ctx)
    if art is None:
        return _gone(ctx)
    if msg.files:
        return Step.stay(*_add_photos(ctx, art, msg))
    if choice_value(msg) == "done" or review.is_done_word(msg.text):
        if not art.body.strip():
            return Step.stay(Reply(ctx.t("The text is still empty. Please send the text of the article first.")))
        _touch(ctx, art, "body")
        return _next(ctx, art)
    text = nfc(msg.text or "").strip()
    if not text:
        return Step.stay(Reply(ctx.t("Please send the text as a message, or type Xong when it is complete.")))
    if len(art.body) + len(text) + 2 > MAX_BODY:
        return Step.stay(Reply(ctx.t("The text is too long (at most {max} characters).", max=MAX_BODY)))
    art.body = f"{art.body}\n\n{text}" if art.body.strip() else text
    art.updated_at = ctx.now
    ctx.session.add(art)
    ctx.session.flush()
    return Step.stay(Reply(ctx.t("Received ({n} characters so far). Send more, or type Xong when the text is "
                                 "complete.", n=ctx.tr.number(len(art.body))),
                           buttons=keyboard(choice(ctx.t("✅ Xong"), "done"))))


def photos(ctx: Ctx, msg: Inbound) -> Step:
    """Pictures only (a photo, or an image sent as a file); ``Xong`` / ``Bỏ qua`` to go on."""
    art = _article(ctx)
    if art is None:
        return _gone(ctx)
    if msg.files:
        return Step.stay(*_add_photos(ctx, art, msg))
    value = choice_value(msg)
    if value in ("done", "skip") or review.is_done_word(msg.text) or fold(msg.text or "") in ("bo qua", "skip"):
        _touch(ctx, art, "photos")
        return _next(ctx, art)
    return Step.stay(Reply(ctx.t("Please send photos, or tap Xong when finished.")),)


def confirm(ctx: Ctx, msg: Inbound) -> Step:
    """Send, change one part, keep for later or discard the draft."""
    art = _article(ctx)
    if art is None:
        return _gone(ctx)
    value = choice_value(msg) or {"gui": "send", "gui di": "send", "gui lai": "send", "de sau": "later"}.get(
        fold(msg.text or "").strip(" .!"), "")
    if msg.files:  # photos sent at the summary are welcome too
        return Step.stay(*_add_photos(ctx, art, msg), _summary(ctx, art))
    if value == "send":
        missing = [s for s in STEPS if s not in (art.progress or [])]
        if missing or not art.title or not art.body.strip() or (art.origin == ORIGIN_COLLECTED and not art.source):
            return _next(ctx, art)
        reply = review.submit(ctx, art)
        if reply is None:
            return _gone(ctx)
        return Step.done(reply)
    if value == "later":
        return Step.done(Reply(ctx.t("💾 The draft is kept. Type /baiviet whenever you want to continue.")))
    if value == "discard" and art.status == ArticleStatus.DRAFT:
        art.status = ArticleStatus.WITHDRAWN
        art.updated_at = ctx.now
        ctx.session.add(art)
        ctx.audit("article.discarded", f"article:{art.id}")
        return Step.done(Reply(ctx.t("🗑 The draft was discarded.")))
    if value == "e:title":
        return _ask_title(ctx, art)
    if value == "e:body":
        art.body = ""
        _forget(ctx, art, "body")
        return _ask_body(ctx, art)
    if value == "e:more":
        _forget(ctx, art, "body")
        return _ask_body(ctx, art)
    if value == "e:photos":
        _forget(ctx, art, "photos")
        return _ask_photos(ctx, art)
    if value == "e:nophotos":
        art.photos = []
        _touch(ctx, art)
        return Step.stay(_summary(ctx, art, ctx.t("The photos were removed.")))
    if value == "e:details":
        _forget(ctx, art, "category", "unit", "origin", "event")
        return _next(ctx, art)
    return Step.stay(Reply(ctx.t("Please choose one of the buttons.")), _summary(ctx, art))


FLOW = Flow(
    name="articles",
    command="baiviet",
    title=N_("Submit an article"),
    description=N_("Send news or an article for the school portal"),
    icon="📰",
    start=start,
    states={"pick": pick, "title": title, "category": category, "unit": unit, "origin": origin,
            "source": source, "event": event, "body": body, "photos": photos, "confirm": confirm},
    order=20,
)

APPROVAL_HOOKS = {"article": review.on_decided}

RULES = [*review.RULES, *stats.RULES, *vote.RULES]

#: The secretary, and those who stand in when the school has none (checked again in the handler).
QUEUE_ROLES = frozenset({Role.SECRETARY, Role.BOARD_HEAD, Role.PRINCIPAL})


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(review.on_action, prefix=review.PREFIX),
    Handler(review.queue, commands=("bientap",), roles=QUEUE_ROLES,
                        description=N_("Articles waiting for the editorial board's secretary"), order=21),
    Handler(review.show_article, commands=("xembai",),
                        description=N_("Read an article: its text, photos and versions"), order=22),
    *stats.HANDLERS,
    *vote.HANDLERS,
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = (
    review.RETURN_FLOW,
    review.EDIT_FLOW,
    review.PUBLISH_FLOW,
    *stats.FLOWS,
    *vote.FLOWS,
)


__all__ = ["APPROVAL_HOOKS", "FLOW", "RULES"]

"""The monthly best-article vote (seed 001 Điều 21: “Mỗi tháng, ban biên tập sẽ tổ chức bình chọn
bài viết hay nhất”).

* ``articles.vote_open`` (monthly, the 1st at 9:00; ``days`` = how long it stays open, default 7):
  a round for last month's published articles; every board member (board head, board members,
  secretary) gets a ballot. One vote each, changeable until the close (``/binhchon`` shows the
  ballot again); nobody votes for their own article.
* ``articles.vote`` (continuous): closes a round when its time has come and counts; a single
  winner is announced to all staff; a tie goes to the board head, who picks one of the tied
  articles (if they have not within 3 days, the tied articles share the title); a round without
  votes is reported to the board only.

Taps carry ``av:<round>:<article>`` (a vote) or ``av:<round>:tb<article>`` (the board head's
tie-break); the server checks the role, the school, the round's state and the candidate list.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import datetime, time, timedelta

from sqlalchemy import update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from bot.core import Button, Ctx, Flow, Handler, Reply, Step, keyboard
from bot.engine.reminders import Continuous, Monthly, Rule, RuleRun
from bot.flows.articles.models import Article, ArticleBallot, ArticleVoteRound, VoteStatus
from bot.flows.articles.service import VOTER_ROLES, month_key, month_label, month_stats, previous_month, short
from bot.i18n import N_, Translator
from bot.roles import Role
from bot.text import parse_id
from storage.models import Person, PersonStatus
from storage.people import people_with_role, people_with_roles

PREFIX = "av"
DEFAULT_DAYS = 7
CLOSE_HOUR = 17
TIE_BREAK_DAYS = 3
MAX_CANDIDATES = 40


def _label(year_month: str) -> str:
    y, m = year_month.split("-")
    return month_label(int(y), int(m))


def tie_breakers(session: Session, school_id: int) -> list[Person]:
    """Who breaks a tie: the board head (the principal when the school has none)."""
    return (people_with_role(session, school_id=school_id, role=Role.BOARD_HEAD)
            or people_with_role(session, school_id=school_id, role=Role.PRINCIPAL))


def _candidates(session: Session, rnd: ArticleVoteRound) -> list[Article]:
    ids = [int(i) for i in rnd.candidates or []]
    if not ids:
        return []
    rows = {a.id: a for a in session.exec(select(Article).where(col(Article.id).in_(ids))).all()}
    return [rows[i] for i in ids if i in rows]


def _author(session: Session, art: Article) -> str:
    p = session.get(Person, art.author_id)
    return p.full_name if p else "?"


def ballot(session: Session, tr: Translator, rnd: ArticleVoteRound, voter: Person, note: str | None = None) -> Reply:
    """The ballot: every candidate (title, author, link) with a button; the voter's current choice marked."""
    assert rnd.id is not None
    mine = session.exec(select(ArticleBallot).where(ArticleBallot.round_id == rnd.id,
                                                    ArticleBallot.voter_id == voter.id)).first()
    lines = []
    if note:
        lines += [note, ""]
    lines.append(tr.t("🏆 <b>Best article of {month}</b>", month=_label(rnd.month)))
    lines.append(tr.t("Choose one article (one vote each). You can change your vote until {time}.",
                      time=tr.datetime(rnd.closes_at)))
    buttons: list[Button] = []
    for i, a in enumerate(_candidates(session, rnd), start=1):
        mark = "☑️ " if mine is not None and mine.article_id == a.id else ""
        own = a.author_id == voter.id
        line = tr.t("{n}. «{title}» — {author}", n=i, title=a.title, author=_author(session, a))
        if own:
            line += " " + tr.t("(your article)")
        lines.append(mark + line)
        if not own:
            buttons.append(Button(f"{mark}{i}. {short(a.title, 36)}", f"{PREFIX}:{rnd.id}:{a.id}"))
    if mine is not None:
        chosen = session.get(Article, mine.article_id)
        lines += ["", tr.t("Your vote: «{title}».", title=chosen.title if chosen else "?")]
    return Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=1))


# -- opening (the 1st) ----------------------------------------------------------------------------
def open_rule(run: RuleRun) -> None:
    """Open last month's round (when it had published articles) and send each board member a ballot."""
    school = run.school
    assert school.id is not None
    year, month = previous_month(run.today())
    key = month_key(year, month)
    rnd = run.session.exec(select(ArticleVoteRound).where(ArticleVoteRound.school_id == school.id,
                                                          ArticleVoteRound.month == key)).first()
    if rnd is None:
        st = month_stats(run.session, school, year, month, run.ctx.tr.tz)
        if not st.articles:
            return
        days = max(1, min(28, int(run.param("days", DEFAULT_DAYS))))
        close_day = run.today() + timedelta(days=days)
        closes = datetime.combine(close_day, time(CLOSE_HOUR), tzinfo=run.ctx.tr.tz)
        rnd = ArticleVoteRound(school_id=school.id, month=key, opened_at=run.now, closes_at=closes,
                               candidates=[a.id for a in st.articles[:MAX_CANDIDATES]])
        run.session.add(rnd)
        run.session.flush()
        run.ctx.audit("article.vote_opened", f"vote:{rnd.id}", month=key, candidates=rnd.candidates,
                      closes=closes.isoformat())
    if rnd.status != VoteStatus.OPEN or run.now >= rnd.closes_at:
        return
    for voter in run.recipients():
        run.notify(voter, _ballot_for(run.session, rnd, voter), key=f"{run.period}:ballot")


def _ballot_for(session: Session, rnd: ArticleVoteRound, voter: Person) -> Callable[[Translator], Reply]:
    return lambda tr: ballot(session, tr, rnd, voter)


# -- taps -----------------------------------------------------------------------------------------
def on_vote(ctx: Ctx) -> Step:
    """``av:<round>:<article>`` (vote / change) or ``av:<round>:tb<article>`` (the board head's tie-break)."""
    person = ctx.person
    assert person is not None
    parts = (ctx.inbound.payload or "").split(":")
    round_id = parse_id(parts[1]) if len(parts) == 3 else None
    tie_break = len(parts) == 3 and parts[2].startswith("tb")
    aid = parse_id(parts[2][2:] if tie_break else parts[2]) if len(parts) == 3 else None
    if round_id is None or aid is None:
        ctx.audit("article.vote_refused", "", reason="malformed", payload=(ctx.inbound.payload or "")[:64])
        return Step.stay(Reply(ctx.t("That button is no longer valid.")))
    rnd = ctx.session.get(ArticleVoteRound, round_id)
    if rnd is None or rnd.school_id != person.school_id:
        ctx.audit("article.vote_refused", f"vote:{round_id}", reason="unknown")
        return Step.stay(Reply(ctx.t("You cannot vote in this round.")))
    if tie_break:
        return Step.stay(_tie_break(ctx, rnd, aid))
    if not person.has_role(*VOTER_ROLES):
        ctx.audit("article.vote_refused", f"vote:{rnd.id}", reason="role")
        return Step.stay(Reply(ctx.t("Only members of the editorial board vote for the best article.")))
    if rnd.status != VoteStatus.OPEN or ctx.now >= rnd.closes_at:
        return Step.stay(Reply(ctx.t("The vote for {month} is closed; votes can no longer be changed.",
                                     month=_label(rnd.month))))
    if aid not in [int(i) for i in rnd.candidates or []]:
        ctx.audit("article.vote_refused", f"vote:{rnd.id}", reason="not_candidate", article=aid)
        return Step.stay(Reply(ctx.t("That article is not in this vote.")))
    art = ctx.session.get(Article, aid)
    if art is None:
        return Step.stay(Reply(ctx.t("That article is not in this vote.")))
    if art.author_id == person.id:
        return Step.stay(Reply(ctx.t("You cannot vote for your own article. Please choose another one.")))
    assert rnd.id is not None and person.id is not None
    changed_from = _cast(ctx, rnd.id, person.id, aid)
    if changed_from == aid:
        return Step.stay(Reply(ctx.t("«{title}» already has your vote.", title=art.title)))
    ctx.audit("article.voted", f"vote:{rnd.id}", article=aid, changed_from=changed_from)
    note = (ctx.t("☑️ Your vote changed to «{title}».", title=art.title) if changed_from is not None
            else ctx.t("☑️ Thank you, your vote for «{title}» is recorded.", title=art.title))
    return Step.stay(ballot(ctx.session, ctx.tr, rnd, person, note))


def _cast(ctx: Ctx, round_id: int, voter_id: int, article_id: int) -> int | None:
    """Record or change the one ballot of this voter; returns the article voted before (None if first)."""
    for _ in range(2):
        row = ctx.session.exec(select(ArticleBallot).where(ArticleBallot.round_id == round_id,
                                                           ArticleBallot.voter_id == voter_id)).first()
        if row is not None:
            before = row.article_id
            if before != article_id:
                ctx.session.execute(update(ArticleBallot).where(col(ArticleBallot.id) == row.id)
                                    .values(article_id=article_id, updated_at=ctx.now)
                                    .execution_options(synchronize_session=False))
            return before
        try:
            with ctx.session.begin_nested():
                assert ctx.person is not None
                ctx.session.add(ArticleBallot(round_id=round_id, school_id=ctx.person.school_id, voter_id=voter_id,
                                              article_id=article_id, created_at=ctx.now, updated_at=ctx.now))
            return None
        except IntegrityError:  # the same voter on another channel at the same moment: change instead
            continue
    return None


def _tie_break(ctx: Ctx, rnd: ArticleVoteRound, aid: int) -> Reply:
    person = ctx.person
    assert person is not None
    if all(p.id != person.id for p in tie_breakers(ctx.session, rnd.school_id)):
        ctx.audit("article.vote_refused", f"vote:{rnd.id}", reason="tie_break_role")
        return Reply(ctx.t("Only the head of the editorial board breaks a tie."))
    if rnd.status != VoteStatus.TIE:
        return Reply(ctx.t("This tie has already been settled."))
    if aid not in [int(i) for i in rnd.winners or []]:
        return Reply(ctx.t("That article is not among the tied ones."))
    res = ctx.session.execute(update(ArticleVoteRound).where(col(ArticleVoteRound.id) == rnd.id,
                                                             col(ArticleVoteRound.status) == VoteStatus.TIE)
                              .values(status=VoteStatus.DECIDED, winners=[aid], tie_broken_by=person.id)
                              .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return Reply(ctx.t("This tie has already been settled."))
    ctx.session.refresh(rnd)
    art = ctx.session.get(Article, aid)
    ctx.audit("article.vote_tie_broken", f"vote:{rnd.id}", article=aid)
    return Reply(ctx.t("🏆 «{title}» is the best article of {month}. The result will be announced to all staff.",
                       title=art.title if art else "?", month=_label(rnd.month)))


def vote_cmd(ctx: Ctx) -> Step:
    """``/binhchon``: the open ballot for board members; otherwise the latest result."""
    person = ctx.person
    assert person is not None
    open_ = ctx.session.exec(select(ArticleVoteRound).where(ArticleVoteRound.school_id == person.school_id,
                                                            ArticleVoteRound.status == VoteStatus.OPEN)
                             .order_by(col(ArticleVoteRound.id).desc())).first()
    if open_ is not None and person.has_role(*VOTER_ROLES) and ctx.now < open_.closes_at:
        return Step.stay(ballot(ctx.session, ctx.tr, open_, person))
    last = ctx.session.exec(select(ArticleVoteRound).where(
        ArticleVoteRound.school_id == person.school_id,
        col(ArticleVoteRound.status).in_([VoteStatus.DECIDED, VoteStatus.ANNOUNCED]))
        .order_by(col(ArticleVoteRound.id).desc())).first()
    if last is None:
        return Step.stay(Reply(ctx.t("There is no best-article result yet.")))
    return Step.stay(result_reply(ctx.session, ctx.tr, last))


# -- closing, tie-break and announcement (continuous) --------------------------------------------------
def tally(session: Session, rnd: ArticleVoteRound) -> Counter[int]:
    rows = session.exec(select(ArticleBallot.article_id).where(ArticleBallot.round_id == rnd.id)).all()
    return Counter(int(a) for a in rows)


def result_reply(session: Session, tr: Translator, rnd: ArticleVoteRound) -> Reply:
    counts = tally(session, rnd)
    winners = [a for a in (session.get(Article, int(i)) for i in rnd.winners or []) if a is not None]
    if len(winners) == 1:
        a = winners[0]
        text = tr.t("🏆 The best article of {month}, chosen by the editorial board: «{title}» by {author} ({n} "
                    "votes). Congratulations!", month=_label(rnd.month), title=a.title,
                    author=_author(session, a), n=counts.get(a.id or 0, 0))
        if a.published_url:
            text += "\n" + a.published_url
        return Reply(text)
    lines = [tr.t("🏆 The best articles of {month}, chosen by the editorial board (tied, {n} votes each):",
                  month=_label(rnd.month), n=counts.get(winners[0].id or 0, 0) if winners else 0)]
    for a in winners:
        lines.append(tr.t("• «{title}» by {author}", title=a.title, author=_author(session, a))
                     + (f" — {a.published_url}" if a.published_url else ""))
    lines.append(tr.t("Congratulations!"))
    return Reply("\n".join(lines))


def _close(run: RuleRun, rnd: ArticleVoteRound) -> None:
    counts = tally(run.session, rnd)
    if not counts:
        status, winners = VoteStatus.EMPTY, []
    else:
        top = max(counts.values())
        # candidates order (publication order) keeps the listing stable
        winners = [int(i) for i in rnd.candidates if counts.get(int(i), 0) == top]
        status = VoteStatus.DECIDED if len(winners) == 1 else VoteStatus.TIE
    res = run.session.execute(update(ArticleVoteRound).where(col(ArticleVoteRound.id) == rnd.id,
                                                             col(ArticleVoteRound.status) == VoteStatus.OPEN)
                              .values(status=status, winners=winners, closed_at=run.now)
                              .execution_options(synchronize_session=False))
    if res.rowcount != 1:  # type: ignore[attr-defined]
        return
    run.session.refresh(rnd)
    run.ctx.audit("article.vote_closed", f"vote:{rnd.id}", status=status, winners=winners,
                  votes=dict(counts.most_common()))


def vote_rule(run: RuleRun) -> None:
    school_id = run.school.id or 0
    rounds = run.session.exec(select(ArticleVoteRound).where(
        ArticleVoteRound.school_id == school_id, col(ArticleVoteRound.announced_at).is_(None),
        col(ArticleVoteRound.status).in_([VoteStatus.OPEN, VoteStatus.TIE, VoteStatus.DECIDED, VoteStatus.EMPTY]))
        .order_by(col(ArticleVoteRound.id))).all()
    for rnd in rounds:
        if rnd.status == VoteStatus.OPEN:
            if run.now < rnd.closes_at:
                continue
            _close(run, rnd)
        if rnd.status == VoteStatus.EMPTY:
            board = people_with_roles(run.session, school_id=school_id, roles=list(VOTER_ROLES))
            deferred_before, run.deferred = run.deferred, False
            month = _label(rnd.month)
            for p in board:
                run.notify(p, _empty_notice(month), key=f"vote:{rnd.id}:empty")
            if not run.deferred:
                rnd.announced_at = run.now
                run.session.add(rnd)
            run.deferred = run.deferred or deferred_before
            continue
        if rnd.status == VoteStatus.TIE:
            closed = rnd.closed_at or run.now
            if run.now - closed >= timedelta(days=TIE_BREAK_DAYS):
                run.session.execute(update(ArticleVoteRound).where(col(ArticleVoteRound.id) == rnd.id,
                                                                   col(ArticleVoteRound.status) == VoteStatus.TIE)
                                    .values(status=VoteStatus.DECIDED).execution_options(synchronize_session=False))
                run.session.refresh(rnd)
                run.ctx.audit("article.vote_shared", f"vote:{rnd.id}", winners=rnd.winners)
            else:
                for p in tie_breakers(run.session, school_id):
                    run.notify(p, _tie_card(run.session, rnd), key=f"vote:{rnd.id}:tie")
                continue
        if rnd.status == VoteStatus.DECIDED:
            _announce(run, rnd)


def _empty_notice(month: str) -> Callable[[Translator], Reply]:
    return lambda tr: Reply(tr.t("The best-article vote for {month} closed without any vote.", month=month))


def _tie_card(session: Session, rnd: ArticleVoteRound) -> Callable[[Translator], Reply]:
    def make(tr: Translator) -> Reply:
        counts = tally(session, rnd)
        tied = [a for a in (session.get(Article, int(i)) for i in rnd.winners or []) if a is not None]
        lines = [tr.t("⚖️ The vote for the best article of {month} ended in a tie ({n} votes each). As head of the "
                      "board, please choose the winner within {days} days; otherwise the tied articles share the "
                      "title.", month=_label(rnd.month), n=counts.get(tied[0].id or 0, 0) if tied else 0,
                      days=TIE_BREAK_DAYS)]
        buttons = []
        for i, a in enumerate(tied, start=1):
            lines.append(tr.t("{n}. «{title}» — {author}", n=i, title=a.title, author=_author(session, a)))
            buttons.append(Button(f"{i}. {short(a.title, 40)}", f"{PREFIX}:{rnd.id}:tb{a.id}"))
        return Reply("\n".join(lines), buttons=keyboard(*buttons, per_row=1))
    return make


def _announce(run: RuleRun, rnd: ArticleVoteRound) -> None:
    """The result to every active staff member (each once); the round is done when nobody is left."""
    staff = run.session.exec(select(Person).where(Person.school_id == run.school.id,
                                                  Person.status == PersonStatus.ACTIVE)
                             .order_by(col(Person.id))).all()
    key = f"vote:{rnd.id}:result"
    deferred_before = run.deferred
    run.deferred = False
    for p in staff:
        run.notify(p, lambda tr: result_reply(run.session, tr, rnd), key=key)
    if not run.deferred:
        run.session.execute(update(ArticleVoteRound).where(col(ArticleVoteRound.id) == rnd.id,
                                                           col(ArticleVoteRound.status) == VoteStatus.DECIDED)
                            .values(status=VoteStatus.ANNOUNCED, announced_at=run.now)
                            .execution_options(synchronize_session=False))
        run.ctx.audit("article.vote_announced", f"vote:{rnd.id}", winners=rnd.winners, staff=len(staff))
    run.deferred = run.deferred or deferred_before


RULES = [
    Rule("articles.vote_open", title=N_("Best-article vote of the month"), schedule=Monthly(day=1, hour=9),
         fn=open_rule, roles=tuple(VOTER_ROLES), regulation="001 Điều 21", order=43),
    Rule("articles.vote", title=N_("Closing the best-article vote and announcing it"), schedule=Continuous(),
         fn=vote_rule, roles=tuple(VOTER_ROLES), regulation="001 Điều 21", order=44),
]


#: commands and button namespaces that are not a conversation
HANDLERS: tuple[Handler, ...] = (
    Handler(on_vote, prefix=PREFIX),
    Handler(vote_cmd, commands=("binhchon",), description=N_("Vote for the best article of the month"),
                        order=24),
)
#: conversations started from a button or another workflow (not from the menu)
FLOWS: tuple[Flow, ...] = ()


__all__ = ["RULES", "ballot", "on_vote", "open_rule", "result_reply", "tally", "vote_cmd", "vote_rule"]

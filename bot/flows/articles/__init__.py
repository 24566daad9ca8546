"""Articles for the school portal: submit (``submit.py``), the editorial board's review and
publication (``review.py``), the monthly vote (``vote.py``), statistics and the monthly report
(``stats.py``, ``report.py``), the school's article settings (``configure.py``)."""

from pathlib import Path

from sqlmodel import Session

from bot.core import Workflow
from bot.flows.articles import configure, review, submit
from bot.flows.articles.models import Article, ArticleBallot, ArticleVersion, ArticleVoteRound
from bot.flows.articles.settings import ArticleSettings
from bot.i18n import N_
from storage.models import School


def _demo_seed(session: Session, school: School, *, data_dir: Path) -> None:
    from bot.flows.articles.service import demo_seed

    demo_seed(session, school)


WORKFLOW = Workflow(
    name="articles",
    title=N_("Submit an article"),
    flows=(submit.FLOW, configure.FLOW, *submit.FLOWS),
    handlers=submit.HANDLERS,
    approval_hooks={"article": review.on_decided},
    rules=submit.RULES,
    tables=(Article, ArticleVersion, ArticleVoteRound, ArticleBallot),
    settings=ArticleSettings,
    demo_seed=_demo_seed,
)

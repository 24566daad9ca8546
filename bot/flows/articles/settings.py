"""Per-school settings of the article pipeline (``School.settings["articles"]``), declared once as
:class:`ArticleSettings`; read them with ``ArticleSettings.of(school)``, change them with
``/caidat_baiviet`` or ``python main.py settings set articles.… …``."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import AfterValidator, Field, field_validator

from bot.i18n import N_
from bot.settings import WorkflowSettings
from bot.text import clean

#: Organisations that need one published article a month besides the units (Điều 18).
ORGANISATIONS: tuple[str, ...] = ("Chi bộ", "Công đoàn", "Chi đoàn", "Đội")
#: Payment per published article in đồng (Điều 21), and the most a school may set.
DEFAULT_RATE = 30_000
MAX_RATE = 10_000_000


def _cleaned(values: list[str]) -> list[str]:
    return [clean(v) for v in values if clean(v)]


class ArticleSettings(WorkflowSettings):
    section = "articles"

    approver: Literal["board_head", "principal", "category"] = Field(
        default="board_head", title=N_("Who approves articles"),
        description=N_("board_head, principal, or category (the board member assigned to the article's "
                       "category, else the board head)."))
    category_approvers: dict[str, int] = Field(
        default={}, strict=False, title=N_("Board member approving each category"),
        description=N_("A JSON table: category key → person id; used when the approver is “category”."))
    rate: int = Field(
        default=DEFAULT_RATE, ge=0, le=MAX_RATE, strict=False, title=N_("Payment per published article (đồng)"),
        description=N_("0 when articles are not funded."))
    portal_domains: Annotated[list[str], AfterValidator(_cleaned)] = Field(
        default=[], title=N_("Portal addresses of published links"),
        description=N_("Host names a published link must belong to, e.g. thuongthanh.edu.vn; empty: any web address."))
    organisations: Annotated[list[str], AfterValidator(_cleaned)] = Field(
        default=list(ORGANISATIONS), title=N_("Organisations with a monthly article quota"),
        description=N_("Besides the school's units (Article 18)."))
    unit_heads: dict[str, list[int]] = Field(
        default={}, strict=False, title=N_("Heads of organisations"),
        description=N_("A JSON table: unit name → list of person ids, who are reminded of the organisation's "
                       "quota (heads of department are found by their role)."))

    @field_validator("unit_heads", mode="before")
    @classmethod
    def _one_head_is_a_list(cls, value: Any) -> Any:
        """``{"Công đoàn": 12}`` is read as ``{"Công đoàn": [12]}``."""
        if isinstance(value, dict):
            return {k: v if isinstance(v, list) else [v] for k, v in value.items()}
        return value

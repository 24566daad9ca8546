"""Incident kinds, their routing groups and an incident's attachments: what the service
(``service.py``) and the written report (``docx.py``) both read."""

from __future__ import annotations

from sqlmodel import Session, col, select

from bot.flows.incidents.models import Incident, IncidentAttachment
from bot.i18n import N_

# -- kinds ----------------------------------------------------------------------------------------
KINDS: dict[str, str] = {
    "security": N_("Security and order"),
    "camera": N_("Camera damaged, covered or disabled"),
    "it_malware": N_("IT security: virus or malware"),
    "it_phishing": N_("IT security: phishing"),
    "it_account": N_("IT security: account misuse"),
    "it_data_loss": N_("IT security: data loss"),
    "equipment": N_("Equipment broken"),
    "other": N_("Other incident"),
}
ICONS: dict[str, str] = {"security": "🛡", "camera": "📹", "it_malware": "🦠", "it_phishing": "🎣",
                         "it_account": "🔑", "it_data_loss": "💾", "equipment": "🔧", "other": "📝"}
IT_KINDS = frozenset({"it_malware", "it_phishing", "it_account", "it_data_loss"})


def group_of(kind: str) -> str:
    """The routing group: ``it`` for the four IT-security kinds, else the kind itself."""
    return "it" if kind in IT_KINDS else kind if kind in KINDS else "other"



def attachments(session: Session, inc: Incident) -> list[IncidentAttachment]:
    return list(session.exec(select(IncidentAttachment).where(IncidentAttachment.incident_id == inc.id)
                             .order_by(col(IncidentAttachment.id))))

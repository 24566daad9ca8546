"""Xin nghỉ phép — leave requests: a teacher asks for days off (``steps.py``), the principal decides
through the approval engine (the ``leave`` approval kind, hook ``steps.on_decided``)."""

from bot.core import Workflow
from bot.i18n import N_
from tests.example_flows.leave import steps
from tests.example_flows.leave.models import LeaveRequest
from tests.example_flows.leave.settings import LeaveSettings

WORKFLOW = Workflow(
    name="leave",
    title=N_("Leave requests"),
    flows=(steps.FLOW,),
    approval_hooks={steps.KIND: steps.on_decided},
    tables=(LeaveRequest,),
    settings=LeaveSettings,
)

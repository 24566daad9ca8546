"""Claims the command ``/camera`` a second time."""

from bot.core import Ctx, Flow, Reply, Step, Workflow


def start(ctx: Ctx) -> Step:
    """Never reached: discovery refuses the workflow."""
    return Step.done(Reply("camera, again"))


WORKFLOW = Workflow(name="camera_again", title="Camera again",
                    flows=(Flow(name="camera_again", title="Camera again", start=start, states={}, command="camera"),))

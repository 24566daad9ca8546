"""A workflow package that cannot be added beside ``bot.flows``: ``camera_again`` claims ``/camera``,
which footage has (``tests/test_new_workflow.py`` checks that ``main.py`` refuses to start)."""

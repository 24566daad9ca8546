"""merge: articles, incidents, equipment and accounts (built side by side on 0004)

Revision ID: 0009
Revises: 0005, 0006, 0007, 0008
Create Date: 2026-11-22 12:00:00
"""


revision = '0009'
down_revision = ('0005', '0006', '0007', '0008')
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass

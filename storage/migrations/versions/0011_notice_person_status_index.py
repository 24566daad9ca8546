"""notice: index (person_id, status), for the held-notice check run on every message

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-22 19:00:00
"""
from alembic import op


revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.create_index('ix_notice_person_status', ['person_id', 'status'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('notice', schema=None) as batch_op:
        batch_op.drop_index('ix_notice_person_status')

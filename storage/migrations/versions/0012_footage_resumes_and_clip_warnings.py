"""footage_request: resumes (automatic restarts after an interrupted cut) and clip_warnings (what
the cut had to give up to fit: sound lowered or dropped, picture downscaled …)

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-04 03:00:00
"""
import sqlalchemy as sa
from alembic import op

revision = '0012'
down_revision = '0011'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('footage_request', schema=None) as batch_op:
        batch_op.add_column(sa.Column('resumes', sa.Integer(), nullable=False, server_default='0'))
        batch_op.add_column(sa.Column('clip_warnings', sa.JSON(), nullable=False, server_default='[]'))


def downgrade() -> None:
    with op.batch_alter_table('footage_request', schema=None) as batch_op:
        batch_op.drop_column('clip_warnings')
        batch_op.drop_column('resumes')

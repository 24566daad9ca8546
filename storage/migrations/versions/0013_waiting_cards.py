"""waiting_card: approval and incident cards kept for a person who has not linked yet, delivered
once when they link

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-04 03:30:00
"""
import sqlalchemy as sa
import sqlmodel
from alembic import op

import storage.models

revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('waiting_card',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('school_id', sa.Integer(), nullable=False),
    sa.Column('person_id', sa.Integer(), nullable=False),
    sa.Column('ref_kind', sqlmodel.sql.sqltypes.AutoString(length=40), nullable=False),
    sa.Column('ref_id', sqlmodel.sql.sqltypes.AutoString(length=60), nullable=False),
    sa.Column('prefix', sqlmodel.sql.sqltypes.AutoString(length=200), nullable=False),
    sa.Column('created_at', storage.models.UTCDateTime(timezone=True), nullable=False),
    sa.Column('delivered_at', storage.models.UTCDateTime(timezone=True), nullable=True),
    sa.ForeignKeyConstraint(['person_id'], ['person.id'], ),
    sa.ForeignKeyConstraint(['school_id'], ['school.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('person_id', 'ref_kind', 'ref_id', name='uq_waiting_card')
    )
    with op.batch_alter_table('waiting_card', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_waiting_card_school_id'), ['school_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('waiting_card', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_waiting_card_school_id'))
    op.drop_table('waiting_card')

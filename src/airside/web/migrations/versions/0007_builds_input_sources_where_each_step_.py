"""builds.input_sources: where each step input came from

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-04 22:03:57.281985
"""
import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('input_sources', sa.JSON(), server_default='{}', nullable=False))


def downgrade() -> None:
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_column('input_sources')

"""worker volume driver and runtime

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 16:23:18.861054
"""
import sqlalchemy as sa
from alembic import op

revision = '0003'
down_revision = '0002'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('volume_driver', sa.String(length=32), server_default='', nullable=False))
        batch_op.add_column(sa.Column('runtime', sa.String(length=32), server_default='', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('runtime')
        batch_op.drop_column('volume_driver')


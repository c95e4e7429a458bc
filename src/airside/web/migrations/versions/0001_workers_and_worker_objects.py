"""workers and worker objects

Revision ID: 0001
Revises:
Create Date: 2026-11-27 15:39:36.351472
"""
import sqlalchemy as sa
from alembic import op

revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('workers',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('platform', sa.String(length=64), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('version', sa.String(length=64), nullable=False),
    sa.Column('baggageclaim_url', sa.String(length=2048), nullable=False),
    sa.Column('runtime_url', sa.String(length=2048), nullable=False),
    sa.Column('resource_types', sa.JSON(), nullable=False),
    sa.Column('boot_epoch', sa.String(length=64), nullable=False),
    sa.Column('ephemeral', sa.Boolean(), nullable=False),
    sa.Column('active_containers', sa.Integer(), nullable=False),
    sa.Column('active_volumes', sa.Integer(), nullable=False),
    sa.Column('active_tasks', sa.Integer(), nullable=False),
    sa.Column('state', sa.String(length=16), nullable=False),
    sa.Column('start_time', sa.Float(), nullable=False),
    sa.Column('last_heartbeat', sa.Float(), nullable=False),
    sa.Column('state_changed_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('name')
    )
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_workers_last_heartbeat'), ['last_heartbeat'], unique=False)
        batch_op.create_index(batch_op.f('ix_workers_state'), ['state'], unique=False)

    op.create_table('worker_objects',
    sa.Column('handle', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('worker_name', sa.String(length=64), nullable=False),
    sa.Column('boot_epoch', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['worker_name'], ['workers.name'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('worker_name', 'kind', 'handle')
    )
    with op.batch_alter_table('worker_objects', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_worker_objects_worker_name'), ['worker_name'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('worker_objects', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_worker_objects_worker_name'))

    op.drop_table('worker_objects')
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_workers_state'))
        batch_op.drop_index(batch_op.f('ix_workers_last_heartbeat'))

    op.drop_table('workers')

"""builds, build events, worker object properties

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 15:49:04.993940
"""
import sqlalchemy as sa
from alembic import op

revision = '0002'
down_revision = '0001'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('builds',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('config_text', sa.Text(), nullable=False),
    sa.Column('tags', sa.JSON(), nullable=False),
    sa.Column('team', sa.String(length=64), nullable=True),
    sa.Column('cache_key', sa.String(length=128), nullable=False),
    sa.Column('runtime', sa.String(length=16), nullable=False),
    sa.Column('worker_name', sa.String(length=64), nullable=True),
    sa.Column('worker_epoch', sa.String(length=64), nullable=True),
    sa.Column('attempt', sa.Integer(), nullable=False),
    sa.Column('requeues', sa.Integer(), nullable=False),
    sa.Column('requeue_budget', sa.Integer(), nullable=False),
    sa.Column('exit_code', sa.Integer(), nullable=True),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('abort_requested', sa.Boolean(), nullable=False),
    sa.Column('inputs', sa.JSON(), nullable=False),
    sa.Column('outputs', sa.JSON(), nullable=False),
    sa.Column('log_offsets', sa.JSON(), nullable=False),
    sa.Column('next_seq', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('queued_at', sa.Float(), nullable=True),
    sa.Column('placed_at', sa.Float(), nullable=True),
    sa.Column('image_ready_at', sa.Float(), nullable=True),
    sa.Column('inputs_ready_at', sa.Float(), nullable=True),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_builds_status'), ['status'], unique=False)
        batch_op.create_index(batch_op.f('ix_builds_worker_name'), ['worker_name'], unique=False)

    op.create_table('build_events',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('build_id', sa.Integer(), nullable=False),
    sa.Column('seq', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('stream', sa.String(length=16), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['build_id'], ['builds.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('build_id', 'seq')
    )
    with op.batch_alter_table('build_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_build_events_build_id'), ['build_id'], unique=False)

    with op.batch_alter_table('worker_objects', schema=None) as batch_op:
        batch_op.add_column(sa.Column('properties', sa.JSON(), server_default='{}', nullable=False))
        batch_op.add_column(sa.Column('last_reported', sa.Float(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('destroying', sa.Boolean(), server_default='0', nullable=False))

    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.add_column(sa.Column('max_tasks', sa.Integer(), server_default='8', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('workers', schema=None) as batch_op:
        batch_op.drop_column('max_tasks')

    with op.batch_alter_table('worker_objects', schema=None) as batch_op:
        batch_op.drop_column('destroying')
        batch_op.drop_column('last_reported')
        batch_op.drop_column('properties')

    with op.batch_alter_table('build_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_build_events_build_id'))

    op.drop_table('build_events')
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_builds_worker_name'))
        batch_op.drop_index(batch_op.f('ix_builds_status'))

    op.drop_table('builds')

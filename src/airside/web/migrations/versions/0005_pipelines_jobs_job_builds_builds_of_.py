"""pipelines, jobs, job builds; builds of pipeline steps

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04 21:37:35.491463
"""
import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('pipelines',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('config_text', sa.Text(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('archived', sa.Boolean(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('updated_at', sa.Float(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('team', 'name')
    )
    with op.batch_alter_table('pipelines', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_pipelines_team'), ['team'], unique=False)

    op.create_table('jobs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('pipeline_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('paused', sa.Boolean(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('next_build_number', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pipeline_id', 'name')
    )
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_jobs_pipeline_id'), ['pipeline_id'], unique=False)

    op.create_table('job_builds',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=32), nullable=False),
    sa.Column('number', sa.Integer(), nullable=False),
    sa.Column('rerun_of', sa.Integer(), nullable=True),
    sa.Column('status', sa.String(length=16), nullable=False),
    sa.Column('plan', sa.JSON(), nullable=False),
    sa.Column('state', sa.JSON(), nullable=False),
    sa.Column('pipeline_version', sa.Integer(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('abort_requested', sa.Boolean(), nullable=False),
    sa.Column('reason', sa.Text(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.Column('started_at', sa.Float(), nullable=True),
    sa.Column('finished_at', sa.Float(), nullable=True),
    sa.ForeignKeyConstraint(['job_id'], ['jobs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('job_id', 'name')
    )
    with op.batch_alter_table('job_builds', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_builds_job_id'), ['job_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_builds_status'), ['status'], unique=False)

    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('job_build_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('step_path', sa.String(length=512), server_default='', nullable=False))
        batch_op.add_column(sa.Column('step_name', sa.String(length=128), server_default='', nullable=False))
        batch_op.create_index(batch_op.f('ix_builds_job_build_id'), ['job_build_id'], unique=False)
        batch_op.create_foreign_key('fk_builds_job_build_id', 'job_builds', ['job_build_id'], ['id'], ondelete='CASCADE')



def downgrade() -> None:
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_constraint('fk_builds_job_build_id', type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_builds_job_build_id'))
        batch_op.drop_column('step_name')
        batch_op.drop_column('step_path')
        batch_op.drop_column('job_build_id')

    with op.batch_alter_table('job_builds', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_builds_status'))
        batch_op.drop_index(batch_op.f('ix_job_builds_job_id'))

    op.drop_table('job_builds')
    with op.batch_alter_table('jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_jobs_pipeline_id'))

    op.drop_table('jobs')
    with op.batch_alter_table('pipelines', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_pipelines_team'))

    op.drop_table('pipelines')

"""resources, resource configs and versions, job build resources; builds with stdin

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-04 22:05:40.064037
"""
import sqlalchemy as sa
from alembic import op

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('resource_configs',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('team', sa.String(length=64), nullable=False),
    sa.Column('type', sa.String(length=128), nullable=False),
    sa.Column('image', sa.JSON(), nullable=False),
    sa.Column('source_hash', sa.String(length=64), nullable=False),
    sa.Column('source', sa.JSON(), nullable=False),
    sa.Column('check_every', sa.Float(), nullable=True),
    sa.Column('next_check_at', sa.Float(), nullable=False),
    sa.Column('last_checked', sa.Float(), nullable=True),
    sa.Column('check_error', sa.Text(), nullable=False),
    sa.Column('failures', sa.Integer(), nullable=False),
    sa.Column('check_build_id', sa.Integer(), nullable=True),
    sa.Column('last_check_build_id', sa.Integer(), nullable=True),
    sa.Column('next_order', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('team', 'type', 'source_hash')
    )
    with op.batch_alter_table('resource_configs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resource_configs_next_check_at'), ['next_check_at'], unique=False)

    op.create_table('resource_versions',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('config_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.JSON(), nullable=False),
    sa.Column('version_hash', sa.String(length=64), nullable=False),
    sa.Column('meta', sa.JSON(), nullable=False),
    sa.Column('check_order', sa.Integer(), nullable=False),
    sa.Column('created_at', sa.Float(), nullable=False),
    sa.ForeignKeyConstraint(['config_id'], ['resource_configs.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('config_id', 'version_hash')
    )
    with op.batch_alter_table('resource_versions', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resource_versions_config_id'), ['config_id'], unique=False)

    op.create_table('resources',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('pipeline_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('config', sa.JSON(), nullable=False),
    sa.Column('config_id', sa.Integer(), nullable=True),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('pinned_version_id', sa.Integer(), nullable=True),
    sa.Column('disabled_versions', sa.JSON(), nullable=False),
    sa.ForeignKeyConstraint(['config_id'], ['resource_configs.id'], ),
    sa.ForeignKeyConstraint(['pipeline_id'], ['pipelines.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('pipeline_id', 'name')
    )
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_resources_pipeline_id'), ['pipeline_id'], unique=False)

    op.create_table('job_build_resources',
    sa.Column('id', sa.Integer(), autoincrement=True, nullable=False),
    sa.Column('job_build_id', sa.Integer(), nullable=False),
    sa.Column('resource_id', sa.Integer(), nullable=False),
    sa.Column('version_id', sa.Integer(), nullable=False),
    sa.Column('name', sa.String(length=128), nullable=False),
    sa.Column('kind', sa.String(length=8), nullable=False),
    sa.ForeignKeyConstraint(['job_build_id'], ['job_builds.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['resource_id'], ['resources.id'], ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['version_id'], ['resource_versions.id'], ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('job_build_resources', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_job_build_resources_job_build_id'), ['job_build_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_job_build_resources_resource_id'), ['resource_id'], unique=False)

    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.add_column(sa.Column('stdin', sa.Text(), nullable=True))
        batch_op.add_column(sa.Column('resource_type', sa.String(length=64), server_default='', nullable=False))
        batch_op.add_column(sa.Column('image_input', sa.String(length=128), server_default='', nullable=False))



def downgrade() -> None:
    with op.batch_alter_table('builds', schema=None) as batch_op:
        batch_op.drop_column('image_input')
        batch_op.drop_column('resource_type')
        batch_op.drop_column('stdin')

    with op.batch_alter_table('job_build_resources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_job_build_resources_resource_id'))
        batch_op.drop_index(batch_op.f('ix_job_build_resources_job_build_id'))

    op.drop_table('job_build_resources')
    with op.batch_alter_table('resources', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resources_pipeline_id'))

    op.drop_table('resources')
    with op.batch_alter_table('resource_versions', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resource_versions_config_id'))

    op.drop_table('resource_versions')
    with op.batch_alter_table('resource_configs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_resource_configs_next_check_at'))

    op.drop_table('resource_configs')

"""The Alembic migrations build exactly the schema the models declare (a column added to a model without a
migration, or a migration that forgets one, fails here before it fails a deployment)."""

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from airside.web import db


def test_migrations_at_head_match_the_models(tmp_path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/m.db")
    db.migrate(engine)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), db.Base.metadata)
    engine.dispose()
    assert diff == [], diff


def test_downgrade_to_base_and_up_again(tmp_path) -> None:
    engine = db.make_engine(f"sqlite:///{tmp_path}/m.db")
    db.migrate(engine)
    from alembic import command

    command.downgrade(db.alembic_config(engine), "base")
    db.migrate(engine)
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()

import pytest

from airside.web import db


@pytest.fixture
def tx(tmp_path):
    """Opens a transaction on a fresh, migrated SQLite database: `with tx() as s: ...`."""
    engine = db.make_engine(f"sqlite:///{tmp_path}/unit.db")
    db.migrate(engine)
    factory = db.sessions(engine)
    yield lambda: db.transaction(factory)
    engine.dispose()

"""Alembic environment: the engine comes from airside (Config.attributes) or -x url=…"""

from alembic import context
from sqlalchemy import create_engine

from airside.web.db import Base

config = context.config
engine = config.attributes.get("engine")
if engine is None:
    engine = create_engine(context.get_x_argument(as_dictionary=True)["url"])

with engine.connect() as connection:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()
    connection.commit()

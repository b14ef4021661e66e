"""Alembic environment: runs on the connection `device_bench.migrations` hands over.

There is no alembic.ini: the configuration is built in code (`migrations.alembic_config`) so it
ships inside the package; the caller opens the connection, holds the migration lock and commits.
"""

from alembic import context

connection = context.config.attributes["connection"]
# render_as_batch: SQLite cannot ALTER most column properties; batch mode copies the table.
context.configure(connection=connection, target_metadata=None, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()

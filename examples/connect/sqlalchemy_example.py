"""SQLAlchemy 2 (psycopg 3 driver) through the sidecar.

    DATABASE_URL=postgresql+psycopg://app@127.0.0.1:6432/app?sslmode=disable PGPASSWORD=... python3 sqlalchemy_example.py

The URL is the app's usual one with host and port changed to the sidecar's. With psycopg 2 write
postgresql+psycopg2:// instead. The sidecar pools server connections, so SQLAlchemy's own pool can
stay small; pool_pre_ping replaces a connection the sidecar closed (drain, restart) before use.
"""

import os

from sqlalchemy import create_engine, text

URL = os.environ.get("DATABASE_URL", "postgresql+psycopg://app@127.0.0.1:6432/app?sslmode=disable")

engine = create_engine(URL, pool_size=5, max_overflow=5, pool_pre_ping=True, pool_recycle=300)

with engine.connect() as conn:
    user = conn.execute(text("SELECT current_user")).scalar_one()
    print(f"sqlalchemy: connected as {user}")

with engine.begin() as conn:  # one transaction: BEGIN ... COMMIT on one server connection
    total = conn.execute(text("SELECT :a + :b"), {"a": 40, "b": 2}).scalar_one()
    print(f"sqlalchemy: transaction ok, sum {total}")

engine.dispose()

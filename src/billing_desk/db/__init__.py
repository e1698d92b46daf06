"""The data layer: SQLAlchemy models, engines for both backends, Alembic migrations."""

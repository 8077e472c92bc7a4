"""Build or upgrade the schema with Alembic, from code (``civicloop init``, tests)."""

from __future__ import annotations

from alembic import command
from alembic.config import Config

from civicloop.core.db import normalise_url


def alembic_config(url: str) -> Config:
    """Return an Alembic config for civicloop's migrations pointed at ``url``."""
    config = Config()
    config.set_main_option("script_location", "civicloop:migrations")
    config.set_main_option("sqlalchemy.url", normalise_url(url).replace("%", "%%"))
    return config


def upgrade(url: str, revision: str = "head") -> None:
    """Run the migrations on ``url`` up to ``revision`` (``alembic upgrade head``)."""
    command.upgrade(alembic_config(url), revision)

"""Import every domain's models so that ``Base.metadata`` knows all tables (for Alembic)."""

from civicloop.analytics import models as _analytics  # noqa: F401
from civicloop.catalog import models as _catalog  # noqa: F401
from civicloop.core import models as _core  # noqa: F401
from civicloop.core.db import Base
from civicloop.open311 import models as _open311  # noqa: F401
from civicloop.org import models as _org  # noqa: F401
from civicloop.requests import models as _requests  # noqa: F401

metadata = Base.metadata

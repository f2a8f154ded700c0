"""The pages, one module per feature; importing this package attaches them to the blueprint."""

from coordination.web.views import (  # noqa: F401
    company,
    flags,
    login,
    matches,
    reports,
    sync_status,
)

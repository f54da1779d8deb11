"""The estiba CLI runs against the same real API server the API tests use."""

from tests.web.api.conftest import (  # noqa: F401  (fixtures, found by pytest by name)
    api_env,
    api_server,
    api_worker,
    dclient,
    made,
)

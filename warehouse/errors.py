"""The warehouse's errors, importable without loading the BigQuery client."""

from __future__ import annotations

from clients.errors import TransientError


class WarehouseUnavailable(TransientError):
    """The warehouse could not be reached or answered with a server error: retry later."""

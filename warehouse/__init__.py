"""All access to the warehouse (BigQuery, or the local emulator) goes through this package."""

from warehouse.landing import (
    BronzeRecord,
    QuarantineRecord,
    Warehouse,
    WarehouseUnavailable,
)
from warehouse.tables import Layers

__all__ = ["BronzeRecord", "Layers", "QuarantineRecord", "Warehouse", "WarehouseUnavailable"]

"""Google's BigQuery client libraries, loaded as an install without pandas would load them.

dbt-bigquery requires ``google-cloud-bigquery[pandas]``, so pandas (with numpy, pandas-gbq and
db-dtypes) is installed wherever the hub is. ``google-cloud-bigquery`` and ``google-cloud-bigquery-
storage`` import it as they load, when it is there, and pyarrow the first time it converts Python
values: about 40 MiB in every process that reaches the warehouse (the ``warehouse`` worker, an API
process once it serves a warehouse read), for DataFrame conversions the hub never makes. The hub's
modules take these libraries from here, so they load first as if pandas were not installed. A later
``import pandas`` elsewhere in the process works as always.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from importlib.abc import MetaPathFinder
from importlib.machinery import ModuleSpec
from types import ModuleType


class _LeavePandasOut(MetaPathFinder):
    """Has ``import pandas`` fail as it would where pandas is not installed, while it is in place."""

    def find_spec(
        self, fullname: str, path: Sequence[str] | None, target: ModuleType | None = None
    ) -> ModuleSpec | None:
        if fullname.partition(".")[0] == "pandas":
            raise ModuleNotFoundError(f"No module named {fullname!r}", name=fullname)
        return None


def _load_without_pandas() -> None:
    if "pandas" in sys.modules or "google.cloud.bigquery" in sys.modules:
        return  # loaded already, one way or the other
    finder = _LeavePandasOut()
    sys.meta_path.insert(0, finder)
    try:
        import google.cloud.bigquery  # its DataFrame helpers note pandas as missing
        import google.cloud.bigquery_storage_v1  # noqa: F401  # and so does its stream reader
        import pyarrow

        # pyarrow asks for pandas the first time it converts Python values, and keeps the answer.
        pyarrow.array([])
    finally:
        sys.meta_path.remove(finder)


_load_without_pandas()

# The names the hub uses, re-exported from the libraries loaded above.
from google.cloud import bigquery  # noqa: E402
from google.cloud.bigquery import ScalarQueryParameter, SchemaField  # noqa: E402
from google.cloud.bigquery_storage_v1 import BigQueryWriteClient, types  # noqa: E402
from google.cloud.bigquery_storage_v1.services.big_query_write.transports import (  # noqa: E402
    BigQueryWriteGrpcTransport,
)

__all__ = [
    "BigQueryWriteClient",
    "BigQueryWriteGrpcTransport",
    "ScalarQueryParameter",
    "SchemaField",
    "bigquery",
    "types",
]

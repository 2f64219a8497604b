"""All access to the warehouse (BigQuery, or the local emulator) goes through this package.

``warehouse.landing`` holds the client (it loads google-cloud-bigquery and pyarrow); ``warehouse.views``
and ``warehouse.errors`` load neither, for processes that only name what the warehouse returns. Google's
BigQuery libraries come from ``warehouse.libraries``, which loads them without pandas.
"""

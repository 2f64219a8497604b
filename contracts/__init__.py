"""What callers need to start, signal and query the hub's workflows, without loading them.

The API, the CLI and the activities that hand work to another workflow import these modules: workflow
type names, workflow ids, inputs, results, signal and query names, and the start and signal helpers.
They import only Temporal's client side and ``core``, so a process that starts workflows does not load
the activities, their clients, BigQuery or pyarrow. The workflow modules implement these contracts.
"""

"""The ``hub`` command: what support staff run beside the Temporal Web UI."""

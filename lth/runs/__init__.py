"""The run model: settings, params.yaml, the on-disk layout, records and sources of one run."""

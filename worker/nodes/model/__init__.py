"""Model nodes (``custom_nodes.model.<name>`` in a pipeline file)."""

"""The error raised for invalid neuron graphs."""


class GraphError(ValueError):
    """An invalid neuron graph (bad ids, duplicate edges, empty or unreachable sets)."""

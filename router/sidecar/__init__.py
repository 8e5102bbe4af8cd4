"""The sidecar: the router as an HTTP service (``python -m router serve``)."""

"""The sidecar's HTTP routes, one module per concern; :func:`router.sidecar.app.create_app`
assembles them."""

"""The HTTP edge: Starlette routes that call the service layer."""

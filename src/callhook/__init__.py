"""callhook: phone calls in, HTTP requests out."""

__version__ = "0.1.0"

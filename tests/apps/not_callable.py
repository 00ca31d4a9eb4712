"""Module whose attributes are not WSGI callables."""
application = 42
settings = {"debug": False}

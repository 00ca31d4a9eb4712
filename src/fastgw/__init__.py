"""fastgw: a fast gateway between the web and Python (WSGI) applications."""

__version__ = "0.1.0"

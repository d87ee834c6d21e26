"""The canonical form, the wire protocols and the plain logic under the proxy's addons."""

__version__ = "0.1.0"

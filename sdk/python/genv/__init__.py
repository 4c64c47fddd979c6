"""genv: GPU environments. The Python SDK is :mod:`genv.sdk`; Ray integration is :mod:`genv.ray`."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("genv")
except PackageNotFoundError:  # used from a checkout without installing
    __version__ = "0.0.0"

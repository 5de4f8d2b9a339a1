"""mochi-yokan: HPC key/value and document storage.

Modules: ``mochi.yokan.server`` (Provider), ``mochi.yokan.client`` (Client,
Database), ``mochi.yokan.mode`` (Mode flags), ``mochi.yokan.exception`` (error
codes and the Exception class), ``mochi.yokan.backends`` (available_backends).
"""

__version__ = "0.1.0"

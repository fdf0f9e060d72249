"""dagd: a systemd-native workflow daemon that runs Dagu DAG files."""

__version__ = "0.1.0"

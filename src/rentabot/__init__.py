"""rentabot: lock and lease shared automation resources, whatever CI you run."""

__version__ = "0.1.0"

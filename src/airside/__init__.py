"""airside: a CI runtime shaped like Concourse (web / worker / baggageclaim)."""

__version__ = "0.1.0"

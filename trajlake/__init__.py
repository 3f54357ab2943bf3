"""trajlake: Soft Verified Generation as an event-sourced data lake with streaming stages."""

__version__ = "0.1.0"

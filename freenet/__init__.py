"""FreeNet models."""

"""Model export package."""

"""Data files of the export package (a package only so that setuptools ships its *.json)."""

"""Coverage-guided fuzz targets (atheris) with their seed corpus; ``make fuzz`` runs them."""

"""Memory banks of normal patch features: nearest-neighbour search and coreset sampling."""

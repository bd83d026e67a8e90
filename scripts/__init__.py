"""absl entry points: thin wrappers over the area libraries."""

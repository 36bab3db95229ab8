"""Data paths: the built-in procedural scenes, manifests, ImageFolder trees, region readers."""

"""Demo model training for ml_app's model store."""

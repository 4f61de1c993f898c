"""HTTP blueprints: prediction, model metadata and health."""

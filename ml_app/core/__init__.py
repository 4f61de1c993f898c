"""The framework-free core: settings, store, models, registry, data plane, validation, metrics."""

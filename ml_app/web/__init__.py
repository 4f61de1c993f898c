"""Everything that knows Flask: hooks, blueprints, protocols, OpenAPI, error rendering."""

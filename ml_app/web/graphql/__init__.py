"""GraphQL at /graphql (Strawberry): models, model(name) and predict, through the one pipeline."""

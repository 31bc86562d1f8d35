"""The hyperparameter language: recipes, name resolution, building with routed arguments and inferred shapes."""

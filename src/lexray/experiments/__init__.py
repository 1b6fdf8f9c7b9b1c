"""Experiments that train and evaluate grids of models to test a claim (e.g. the style-mix experiment)."""

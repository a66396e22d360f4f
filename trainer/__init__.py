"""Parameterized GPT trainer for hyperparameter-transfer studies.

Importing the package is cheap: torch is imported only by the modules that train (model, train, coord_check), so
analysis and app can use trainer.schema, trainer.config and trainer.parameterization without it.
"""

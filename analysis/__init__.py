"""Analysis of hyperparameter-transfer sweeps: load runs, classify them, find optima, test transfer, recommend.

Every public function is pure (polars/numpy in, dataclasses or polars frames out) so the dashboard only displays
what these functions compute. Method reference: shared/spec/analysis-methods.md (cited as §x.y in comments).
Importing the package is cheap: mlflow is imported only when a store is read through its API or written.
"""

"""The AmbER² trainer: datasets, cached features, the cross-validation protocol, reports and Hub export.

Run as ``python -m train ...``.
"""

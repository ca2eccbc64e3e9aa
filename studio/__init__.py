"""Shared UI code of the Studio app: URL codec, field metadata, widgets, plot builders.

Nothing here computes science; it turns widgets into a Scenario and engine results into plots.
"""

"""Handling units (承办单位), their hierarchy, and grids (网格)."""

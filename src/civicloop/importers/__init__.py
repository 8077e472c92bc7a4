"""Data in: readers for public data sets and civicloop's own generator of sample data."""

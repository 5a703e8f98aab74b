"""segrt tests."""

"""Stack shims; see the module docstring once written."""

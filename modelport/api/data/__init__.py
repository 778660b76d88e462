"""Routes of the data plane: queries."""

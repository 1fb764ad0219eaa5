"""Export a trained student to standard formats."""

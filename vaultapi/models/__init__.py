"""One module per table: its JSON wire shape and its queries."""

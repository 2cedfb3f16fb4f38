"""Classical (non-learned) image restoration methods."""

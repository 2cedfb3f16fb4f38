"""Classical (non-learned) methods: the Dark Channel Prior and directional rain removal."""

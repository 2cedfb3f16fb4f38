"""The networks: derain U-Net, AECR-Net dehazer, CUT generator, discriminators and shared layers."""

"""The networks and what trains them: the transformer, the VGG loss network, the perceptual and stability losses."""

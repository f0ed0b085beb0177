"""Everything that fits or trains: the feature mapper (train, retrain from corrections), calibration and
the image fit, the image–entity corpus and the image scorer's training. The runtime never imports it."""

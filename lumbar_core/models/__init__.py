"""Network builders and the device/precision helpers shared by the training and inference stages."""

"""nnU-Net v2 glue: raw dataset writing, environment, the project's trainer subclass, and prediction."""

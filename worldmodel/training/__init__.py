"""Training on accelerate: the loop, EMA, validation and the checkpoint export."""

"""Pure-torch training and evaluation; runs without Ray."""

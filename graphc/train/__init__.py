"""``graphc train``: loading a spec for training, data and normalisation, optimisers as graph
nodes, the loop, checkpoints and resume, curves, and its command line."""

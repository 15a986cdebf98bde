"""The IR: the graph and its builder, building a graph from a spec, shape and cost analysis with
receptive fields, parameter initialisation, symbolic differentiation and the optimisation passes.
Knows the spec and the ops; knows nothing of backends, training or tuning."""

"""``graphc tune``: the search space, the static pre-filter, trials on Dask, what a search keeps on
disk, its plot, and its command line."""

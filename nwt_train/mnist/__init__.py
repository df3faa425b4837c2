"""Appendix A of the NWT paper on MNIST: Memcodes occupancy, head control and Hamming retrieval.

`data` reads and checks the IDX files, `models` holds the image-sized encoder, decoder and critic
around the shared `Memcodes`, `study` trains and evaluates, `figures` draws the PNGs and `command`
is the `nwt-train mnist-study` entry point.
"""

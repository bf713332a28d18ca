"""One module per primitive config, named as its nn.Module's file in ``mad_bench/primitives``;
:mod:`mad_bench.configs.registry` lists them by name."""

"""Measures of model quality used by training, the zoo build and the benchmarks (torch; never imported by
runtime/, batch/ or serving/)."""

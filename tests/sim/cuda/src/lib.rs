//! Test-double libcuda.so.1 (see tests/sim/common).

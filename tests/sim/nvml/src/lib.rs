//! Test-double libnvidia-ml.so.1 (see tests/sim/common).
